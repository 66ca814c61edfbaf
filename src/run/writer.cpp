#include "covfit/run/writer.hpp"

namespace covfit::run {

SerialWriter::SerialWriter(std::function<void()> flush, std::chrono::milliseconds flush_every,
                           std::size_t capacity)
    : flush_(std::move(flush)), flush_every_(flush_every), capacity_(capacity),
      thread_([this] { loop(); }) {}

SerialWriter::~SerialWriter() {
  try {
    close();
  } catch (...) {
  }
}

void SerialWriter::submit(std::function<void()> write) {
  std::unique_lock lock(mu_);
  not_full_.wait(lock, [&] { return queue_.size() < capacity_ || error_; });
  if (error_) std::rethrow_exception(error_);
  queue_.push_back(std::move(write));
  not_empty_.notify_one();
}

void SerialWriter::close() {
  {
    std::lock_guard lock(mu_);
    if (closing_ && !thread_.joinable()) {
      if (error_) std::rethrow_exception(error_);
      return;
    }
    closing_ = true;
  }
  not_empty_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(error_);
}

void SerialWriter::loop() {
  auto last_flush = std::chrono::steady_clock::now();
  bool dirty = false;
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      not_empty_.wait_for(lock, flush_every_, [&] { return !queue_.empty() || closing_; });
      if (!queue_.empty()) {
        job = std::move(queue_.front());
        queue_.pop_front();
        not_full_.notify_one();
      } else if (closing_) {
        break;
      }
    }
    try {
      if (job) {
        if (!error_) job();
        dirty = true;
      }
      auto now = std::chrono::steady_clock::now();
      if (dirty && !error_ && now - last_flush >= flush_every_) {
        flush_();
        last_flush = now;
        dirty = false;
      }
    } catch (...) {
      std::lock_guard lock(mu_);
      error_ = std::current_exception();
      not_full_.notify_all();
    }
  }
  try {
    if (dirty && !error_) flush_();
  } catch (...) {
    error_ = std::current_exception();
  }
}

}  // namespace covfit::run
