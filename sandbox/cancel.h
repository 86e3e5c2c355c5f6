// CancelToken: a one-way "stop now" flag that a wait loop can poll on.
//
// Whoever runs a step creates a token and passes it to Container::Run(); any other thread,
// or a signal handler, calls Cancel() to end the step early (the kill ladder then runs and
// the Outcome says kCancelled). Once cancelled, a token stays cancelled; make a new one for
// the next step.
//
//   auto token = CancelToken::Create();            // tl::expected<CancelToken, Error>
//   std::thread stopper([&] { ...; token->Cancel(); });
//   auto outcome = container.Run(command, sink, *token);
//
// Ownership: the token owns one eventfd (close-on-exec, so children never see it).
// Thread safety: Cancel(), cancelled() and fd() may be called concurrently from any thread,
// and Cancel() also from a signal handler (it is one write(2) on an eventfd, which is
// async-signal-safe). Moving a token while another thread uses it is a data race: move it
// only before sharing it.
#pragma once

#include <tl/expected.hpp>

#include "sandbox/error.h"
#include "sandbox/unique_fd.h"

namespace gearrun::sandbox {

class CancelToken {
 public:
  // Fails only if no eventfd can be created (EMFILE, ENFILE, ENOMEM).
  [[nodiscard]] static tl::expected<CancelToken, Error> Create();

  CancelToken(CancelToken&&) noexcept = default;
  CancelToken& operator=(CancelToken&&) noexcept = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;
  ~CancelToken() = default;

  // Async-signal-safe; preserves errno. Calling it more than once is harmless.
  void Cancel() const noexcept;

  // True once Cancel() has been called.
  [[nodiscard]] bool cancelled() const noexcept;

  // Readable (POLLIN) from the moment Cancel() is called, for good: the token never
  // consumes its own event, so poll() on it is level-triggered. Do not read from it.
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }

 private:
  explicit CancelToken(UniqueFd fd) : fd_(std::move(fd)) {}

  UniqueFd fd_;
};

}  // namespace gearrun::sandbox
