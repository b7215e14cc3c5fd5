// progress.cpp: stderr progress bar (tools/common); see progress.h.
#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

namespace dsv3 {
namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string format_interval(double seconds) {
  const int64_t s = std::max<int64_t>(0, static_cast<int64_t>(seconds));
  const int64_t h = s / 3600, m = (s / 60) % 60, sec = s % 60;
  return h ? fmt::format("{}:{:02}:{:02}", h, m, sec) : fmt::format("{:02}:{:02}", m, sec);
}

std::string format_progress(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            int bar_width) {
  const double frac = total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0) : 0.0;
  const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0.0;
  const std::string eta = rate > 0 ? format_interval(static_cast<double>(total - done) / rate) : "?";
  std::string s = label.empty() ? "" : label + ": ";
  s += fmt::format("{:3d}%", static_cast<int>(frac * 100.0));
  if (bar_width > 0) {
    const int filled = static_cast<int>(frac * bar_width);
    s += '|';
    s.append(static_cast<size_t>(filled), '#');
    s.append(static_cast<size_t>(bar_width - filled), ' ');
    s += '|';
  }
  s += fmt::format(" {}/{} [{}<{}, ", done, total, format_interval(elapsed_s), eta);
  s += rate > 0 ? fmt::format("{:.2f}it/s]", rate) : std::string("?it/s]");
  return s;
}

ProgressBar::ProgressBar(int64_t total, Options opts) : opts_(std::move(opts)), total_(total) {
  if (!opts_.clock) opts_.clock = steady_seconds;
  tty_ = opts_.tty.value_or(isatty(fileno(opts_.out)) != 0);
  start_s_ = opts_.clock();
}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::advance(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  draw_locked(false);
}

void ProgressBar::set(int64_t done) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ = done;
  draw_locked(false);
}

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  draw_locked(true);
  finished_ = true;
}

int64_t ProgressBar::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

int ProgressBar::lines_drawn() const {
  std::lock_guard<std::mutex> lock(mu_);
  return draws_;
}

void ProgressBar::draw_locked(bool final) {
  if (finished_) return;
  const double now = opts_.clock();
  const double interval = tty_ ? opts_.min_interval_s : opts_.plain_interval_s;
  // The first update and the last are always drawn; in between, at most one per interval.
  if (!final && draws_ > 0 && now - last_draw_s_ < interval) return;
  last_draw_s_ = now;
  ++draws_;
  const std::string line = format_progress(opts_.label, done_, total_, now - start_s_, tty_ ? 20 : 0);
  if (tty_)
    std::fprintf(opts_.out, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(opts_.out, "%s\n", line.c_str());
  std::fflush(opts_.out);
}

}  // namespace dsv3
