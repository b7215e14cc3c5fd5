// progress.h: a progress bar on stderr for long runs (tools/common): done/total, percentage, rate and ETA, in
// tqdm's layout ("label:  45%|#####     | 45/100 [00:03<00:04, 13.21it/s]"). On a terminal it redraws one line
// at most ~10 times a second; otherwise (logs, pipes) it prints plain lines, at most one per plain_interval_s.
// Used by `dsv3 generate` and `dsv3 bench`. Thread-safe: advance() may be called from any thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace dsv3 {

// "MM:SS", or "H:MM:SS" from one hour on (tqdm's format_interval).
std::string format_interval(double seconds);

// One progress line without terminal control characters. bar_width 0 leaves the bar out.
std::string format_progress(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            int bar_width = 20);

class ProgressBar {
 public:
  struct Options {
    std::string label;
    std::FILE* out = stderr;
    std::optional<bool> tty;                // nullopt: isatty(out)
    double min_interval_s = 0.1;            // terminal redraws
    double plain_interval_s = 5.0;          // plain lines
    std::function<double()> clock;          // seconds; default steady_clock (tests inject one)
  };

  ProgressBar(int64_t total, Options opts);
  explicit ProgressBar(int64_t total, std::string label = "") : ProgressBar(total, with_label(std::move(label))) {}
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void advance(int64_t n = 1);
  void set(int64_t done);
  void finish();  // draws the final state and ends the line; idempotent

  int64_t done() const;
  int lines_drawn() const;  // how many times it drew (tests check the throttling)

 private:
  static Options with_label(std::string label) {
    Options o;
    o.label = std::move(label);
    return o;
  }
  void draw_locked(bool final);

  mutable std::mutex mu_;
  Options opts_;
  int64_t total_, done_ = 0;
  double start_s_, last_draw_s_ = -1e300;
  bool tty_, finished_ = false;
  int draws_ = 0;
};

}  // namespace dsv3
