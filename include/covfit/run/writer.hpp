// One thread owns the output file; workers hand it closures. HDF5 is never called from
// a worker thread, and the bounded queue keeps memory flat however many tasks a job has.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace covfit::run {

class SerialWriter {
 public:
  // `flush` runs at most every `flush_every` and when the queue drains at close.
  SerialWriter(std::function<void()> flush, std::chrono::milliseconds flush_every,
               std::size_t capacity = 64);
  ~SerialWriter();
  // Blocks while the queue is full. Rethrows a failure of an earlier write.
  void submit(std::function<void()> write);
  // Drain, flush, join. Rethrows a failure of any write.
  void close();

 private:
  void loop();
  std::function<void()> flush_;
  std::chrono::milliseconds flush_every_;
  std::size_t capacity_;
  std::deque<std::function<void()>> queue_;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  bool closing_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace covfit::run
