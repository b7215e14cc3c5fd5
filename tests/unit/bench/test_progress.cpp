// test_progress.cpp: the stderr progress bar (tools/common/progress): the tqdm-style line, throttling on a
// terminal (at most one redraw per 0.1 s, final state always drawn) and plain lines when not on a terminal.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "common/progress.h"

namespace dsv3 {
namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

TEST(Progress, Format) {
  EXPECT_EQ(format_interval(0), "00:00");
  EXPECT_EQ(format_interval(75.9), "01:15");
  EXPECT_EQ(format_interval(3725), "1:02:05");
  // 45 of 100 in 3 s: 15 it/s, 55 left -> 3.67 s -> "00:03"; 45% of a 20-wide bar = 9 '#'.
  EXPECT_EQ(format_progress("Processed requests", 45, 100, 3.0, 20),
            "Processed requests:  45%|#########           | 45/100 [00:03<00:03, 15.00it/s]");
  EXPECT_EQ(format_progress("", 0, 8, 0.0, 0), "  0% 0/8 [00:00<?, ?it/s]");
  EXPECT_EQ(format_progress("x", 8, 8, 2.0, 4), "x: 100%|####| 8/8 [00:02<00:00, 4.00it/s]");
}

TEST(Progress, TerminalRedrawsAreThrottled) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double now = 100.0;
  ProgressBar::Options o;
  o.label = "gen";
  o.out = f;
  o.tty = true;
  o.clock = [&] { return now; };
  {
    ProgressBar bar(1000, o);
    for (int i = 0; i < 1000; ++i) {  // 1000 updates over 1 s of fake time
      now += 0.001;
      bar.advance();
    }
    EXPECT_EQ(bar.done(), 1000);
    // First update, then one per 0.1 s: about 10 draws, never one per update.
    EXPECT_GE(bar.lines_drawn(), 9);
    EXPECT_LE(bar.lines_drawn(), 11);
    bar.finish();
    bar.finish();  // idempotent
    EXPECT_LE(bar.lines_drawn(), 12);
  }
  const std::string s = contents(f);
  std::fclose(f);
  EXPECT_NE(s.find("\rgen:   0%|"), std::string::npos) << s;
  EXPECT_NE(s.find("gen: 100%|####################| 1000/1000 [00:01<00:00, 1000.00it/s]\033[K\n"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.back(), '\n');
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double now = 0.0;
  ProgressBar::Options o;
  o.label = "bench";
  o.out = f;
  o.tty = false;
  o.plain_interval_s = 5.0;
  o.clock = [&] { return now; };
  {
    ProgressBar bar(20, o);
    for (int i = 0; i < 20; ++i) {  // one request per second
      now += 1.0;
      bar.advance();
    }
  }  // the destructor draws the final line
  const std::string s = contents(f);
  std::fclose(f);
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_EQ(s.find('\033'), std::string::npos);
  // Drawn at t = 1, 6, 11, 16 (every 5 s) and the final state at t = 20.
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 5) << s;
  EXPECT_NE(s.find("bench:   5% 1/20 [00:01<00:19, 1.00it/s]\n"), std::string::npos) << s;
  EXPECT_NE(s.find("bench: 100% 20/20 [00:20<00:00, 1.00it/s]\n"), std::string::npos) << s;
}

}  // namespace
}  // namespace dsv3
