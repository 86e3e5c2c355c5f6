#include "sandbox/cancel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <thread>

namespace gearrun::sandbox {
namespace {

using namespace std::chrono_literals;

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

TEST(CancelTokenTest, StartsNotCancelled) {
  auto token = CancelToken::Create();
  ASSERT_TRUE(token) << token.error().ToString();
  EXPECT_FALSE(token->cancelled());
  EXPECT_FALSE(Readable(token->fd(), 0));
}

TEST(CancelTokenTest, CancelIsStickyAndLevelTriggered) {
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  token->Cancel();
  token->Cancel();
  EXPECT_TRUE(token->cancelled());
  EXPECT_TRUE(Readable(token->fd(), 0));
  EXPECT_TRUE(Readable(token->fd(), 0)) << "polling does not consume the cancellation";
  EXPECT_TRUE(token->cancelled());
}

TEST(CancelTokenTest, CancelFromAnotherThreadWakesAPoll) {
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  auto start = std::chrono::steady_clock::now();
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    token->Cancel();
  });
  EXPECT_TRUE(Readable(token->fd(), 10000));
  canceller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(token->cancelled());
}

const CancelToken* g_token = nullptr;

extern "C" void CancelOnSignal(int /*sig*/) { g_token->Cancel(); }

TEST(CancelTokenTest, CancelFromASignalHandler) {
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  g_token = &*token;
  struct sigaction action {};
  action.sa_handler = CancelOnSignal;
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &previous), 0);
  errno = 1234;
  ASSERT_EQ(::raise(SIGUSR1), 0);
  int after = errno;
  ::sigaction(SIGUSR1, &previous, nullptr);
  g_token = nullptr;
  EXPECT_TRUE(token->cancelled());
  EXPECT_EQ(after, 1234) << "the handler must preserve errno";
}

TEST(CancelTokenTest, FdIsCloseOnExec) {
  auto token = CancelToken::Create();
  ASSERT_TRUE(token);
  int flags = ::fcntl(token->fd(), F_GETFD);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & FD_CLOEXEC, 0);
}

}  // namespace
}  // namespace gearrun::sandbox
