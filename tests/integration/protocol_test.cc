// The packets `gearrun serve` sends, as a server sees them: the real binary against a
// scripted server in the test (the seam is the server; gearrun's side is all real). Checks
// the rules of shared/protocol.md that a real gearmand cannot show: the order of
// SET_CLIENT_ID / RESET_ABILITIES / CAN_DO on every connect, registration deltas, a single
// outstanding GRAB per node, and WORK_EXCEPTION followed by WORK_FAIL.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <thread>

#include "runner/gearman_packet.h"
#include "sandbox/unique_fd.h"
#include "tests/support/command.h"
#include "tests/support/fuzz.h"

namespace gearrun {
namespace {

using runner::Command;
using runner::Magic;
using runner::Packet;
using sandbox::UniqueFd;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::string kGearrun = GEARRUN_BINARY;

// One accepted connection, read packet by packet.
class PeerConnection {
 public:
  explicit PeerConnection(UniqueFd fd) : fd_(std::move(fd)) {}

  // The next packet, or nullopt when none comes within `timeout` (or the peer closed).
  std::optional<Packet> Next(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto packet = decoder_.Next();
      if (!packet) ADD_FAILURE() << packet.error();
      if (packet && packet->has_value()) return std::move(**packet);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{.fd = fd_.get(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

  // The next packet's command name and first argument, "NONE" when nothing comes.
  std::string NextText(std::chrono::milliseconds timeout = 5s) {
    auto p = Next(timeout);
    if (!p) return "NONE";
    std::string text = runner::CommandName(p->command);
    if (!p->args.empty()) text += " " + p->args[0];
    return text;
  }

  void Reply(Command command, std::vector<std::string> args = {}) {
    std::string bytes =
        runner::Encode({.magic = Magic::kResponse, .command = command, .args = std::move(args)});
    ASSERT_EQ(::write(fd_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  // Raw bytes, for packets sent in pieces.
  void Write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      ASSERT_GT(n, 0) << "the runner closed the connection";
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void Close() { fd_.reset(); }
  [[nodiscard]] bool closed() const { return closed_; }

 private:
  UniqueFd fd_;
  runner::PacketDecoder decoder_{Magic::kRequest};
  bool closed_ = false;
};

class ScriptedServer {
 public:
  ScriptedServer() : listen_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    int on = 1;
    ::setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_.get(), 16), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }

  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Accepts connections until `count` have said who they are (SET_CLIENT_ID, their first
  // packet); returns them by client id.
  std::map<std::string, std::unique_ptr<PeerConnection>> Accept(size_t count) {
    std::map<std::string, std::unique_ptr<PeerConnection>> out;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
      pollfd p{.fd = listen_.get(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      auto peer = std::make_unique<PeerConnection>(
          UniqueFd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC)));
      auto first = peer->Next();
      if (!first) continue;
      EXPECT_EQ(first->command, Command::kSetClientId) << "first packet of a connection";
      out[first->args.at(0)] = std::move(peer);
    }
    return out;
  }

 private:
  UniqueFd listen_;
  int port_ = 0;
};

class ProtocolTest : public ::testing::Test {
 protected:
  void WriteJob(const std::string& name, const std::string& extra = "") {
    dir_.Write("jobs/" + name + ".yaml",
               "name: " + name + "\n" + extra + "steps: [{run: 'echo hi'}]\n");
  }

  std::unique_ptr<testing::BackgroundCommand> Serve(int executors) {
    return std::make_unique<testing::BackgroundCommand>(std::vector<std::string>{
        kGearrun, "serve", "--server", server_.address(), "--node", "n1", "--labels", "linux",
        "--executors", std::to_string(executors), "--jobs", (dir_ / "jobs").string(), "--state-dir",
        (dir_ / "state").string(), "--log-level", "debug"});
  }

  // Answers the manager's first GRAB, so that it sleeps (a runner waits for an open GRAB's
  // reply before it exits).
  static void QuietManager(PeerConnection& manager) {
    Registration(manager, 2);
    EXPECT_EQ(manager.NextText(), "GRAB_JOB_UNIQ");
    manager.Reply(Command::kNoJob);
  }

  // A runner with one executor, its manager quiet and its executor registered with
  // `functions` functions: what most tests start from.
  struct OneExecutor {
    std::unique_ptr<testing::BackgroundCommand> serve;
    std::map<std::string, std::unique_ptr<PeerConnection>> conns;
    PeerConnection* e0 = nullptr;
    PeerConnection* manager = nullptr;
  };
  OneExecutor StartOneExecutor(size_t functions) {
    OneExecutor one{.serve = Serve(1)};
    one.conns = server_.Accept(2);
    EXPECT_EQ(one.conns.size(), 2u) << one.serve->err();
    if (one.conns.size() != 2u) return one;
    one.e0 = one.conns.at("n1_exec-0").get();
    one.manager = one.conns.at("n1_manager").get();
    QuietManager(*one.manager);
    Registration(*one.e0, functions);
    return one;
  }

  // The registration a connection sends after SET_CLIENT_ID.
  static std::vector<std::string> Registration(PeerConnection& c, size_t can_dos) {
    std::vector<std::string> out;
    for (size_t i = 0; i < can_dos + 1; ++i) out.push_back(c.NextText());
    return out;
  }

  testing::TempDir dir_;
  ScriptedServer server_;
};

TEST_F(ProtocolTest, EveryConnectionResetsThenRegistersAndOnlyOneGrabIsOutstanding) {
  WriteJob("guava", "node: linux\n");
  auto serve = Serve(2);
  auto conns = server_.Accept(3);
  ASSERT_EQ(conns.size(), 3u) << serve->err();
  auto& e0 = *conns.at("n1_exec-0");
  auto& e1 = *conns.at("n1_exec-1");
  auto& manager = *conns.at("n1_manager");
  EXPECT_THAT(Registration(e0, 2),
              ElementsAre("RESET_ABILITIES", "CAN_DO build:guava", "CAN_DO build:guava:linux"));
  EXPECT_THAT(Registration(e1, 2),
              ElementsAre("RESET_ABILITIES", "CAN_DO build:guava", "CAN_DO build:guava:linux"));
  EXPECT_THAT(Registration(manager, 2),
              ElementsAre("RESET_ABILITIES", "CAN_DO set_description:n1", "CAN_DO stop:n1"));
  EXPECT_EQ(manager.NextText(), "GRAB_JOB_UNIQ");
  manager.Reply(Command::kNoJob);

  // Exactly one executor grabs; while its GRAB is unanswered the other stays silent.
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  EXPECT_EQ(e1.NextText(1500ms), "NONE");
  // NO_JOB: it sleeps, and the right to grab moves on.
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(e0.NextText(), "PRE_SLEEP");
  EXPECT_EQ(e1.NextText(), "GRAB_JOB_UNIQ");
  EXPECT_EQ(e0.NextText(1000ms), "NONE");
  e1.Reply(Command::kNoJob);
  EXPECT_EQ(e1.NextText(), "PRE_SLEEP");
  // A NOOP wakes a sleeping connection, which grabs again.
  e1.Reply(Command::kNoop);
  EXPECT_EQ(e1.NextText(), "GRAB_JOB_UNIQ");
  serve->Signal(SIGTERM);
  // Draining: registrations go, the open GRAB is still answered, then the runner exits.
  EXPECT_EQ(e0.NextText(), "RESET_ABILITIES");
  EXPECT_EQ(e1.NextText(), "RESET_ABILITIES");
  e1.Reply(Command::kNoJob);
  auto r = serve->Wait(10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(ProtocolTest, BadRequestGetsExceptionThenFailAndGrabbingResumes) {
  WriteJob("guava");
  auto one = StartOneExecutor(1);
  ASSERT_NE(one.e0, nullptr);
  auto& serve = one.serve;
  auto& e0 = *one.e0;
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  e0.Reply(Command::kJobAssignUniq, {"H:1", "build:guava", "u-1", "[1, 2]"});
  auto exception = e0.Next();
  ASSERT_TRUE(exception);
  EXPECT_EQ(exception->command, Command::kWorkException);
  EXPECT_EQ(exception->args.at(0), "H:1");
  EXPECT_THAT(exception->args.at(1), HasSubstr("JSON object"));
  EXPECT_EQ(e0.NextText(), "WORK_FAIL H:1");
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  // An empty workload (libgearman's client cannot even send one).
  e0.Reply(Command::kJobAssignUniq, {"H:0", "build:guava", "u-0", ""});
  EXPECT_EQ(e0.NextText(), "WORK_EXCEPTION H:0");
  EXPECT_EQ(e0.NextText(), "WORK_FAIL H:0");
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  // A function the node does not have: WORK_FAIL alone.
  e0.Reply(Command::kJobAssign, {"H:2", "build:other", "{}"});
  EXPECT_EQ(e0.NextText(), "WORK_FAIL H:2");
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  // A build that runs: data, status, then the result, then the next grab.
  e0.Reply(Command::kJobAssignUniq, {"H:3", "build:guava", "u-3", "{}"});
  auto data = e0.Next();
  ASSERT_TRUE(data);
  EXPECT_EQ(data->command, Command::kWorkData);
  EXPECT_THAT(data->args.at(1), HasSubstr("\"number\":1"));
  auto status = e0.Next();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->command, Command::kWorkStatus);
  EXPECT_THAT(status->args, ElementsAre("H:3", "0", "1"));
  EXPECT_EQ(e0.NextText(), "WORK_STATUS H:3");
  auto complete = e0.Next();
  ASSERT_TRUE(complete);
  EXPECT_EQ(complete->command, Command::kWorkComplete);
  EXPECT_THAT(complete->args.at(1), HasSubstr("\"result\":\"SUCCESS\""));
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  serve->Signal(SIGTERM);
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(serve->Wait(10s).exit_code, 0);
}

// Reads packets for `handle` until its request ends; returns the terminal packet's name
// ("WORK_FAIL" or "WORK_COMPLETE"), or what came instead.
std::string AnswerTo(PeerConnection& c, const std::string& handle) {
  for (;;) {
    auto p = c.Next(30s);
    if (!p) return "NONE";
    if (p->args.empty() || p->args[0] != handle)
      return "UNEXPECTED " + runner::CommandName(p->command);
    if (p->command == Command::kWorkFail || p->command == Command::kWorkComplete) {
      return runner::CommandName(p->command);
    }
  }
}

// A request over the old 64 MiB packet limit made the runner drop the connection (and
// gearmand re-queued it for ever): it is answered, and the connection goes on.
TEST_F(ProtocolTest, AnOversizedRequestIsAnsweredOnTheSameConnection) {
  WriteJob("guava");
  auto one = StartOneExecutor(1);
  ASSERT_NE(one.e0, nullptr);
  auto& serve = one.serve;
  auto& e0 = *one.e0;
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  e0.Reply(Command::kJobAssignUniq,
           {"H:big", "build:guava", "u-big", "{\"A\": \"" + std::string(65u << 20, 'x') + "\"}"});
  auto exception = e0.Next();
  ASSERT_TRUE(exception);
  EXPECT_EQ(exception->command, Command::kWorkException);
  EXPECT_THAT(exception->args.at(1), HasSubstr("a workload may be at most 1048576"));
  EXPECT_EQ(e0.NextText(), "WORK_FAIL H:big");
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  e0.Reply(Command::kJobAssignUniq, {"H:small", "build:guava", "u-small", "{}"});
  EXPECT_EQ(AnswerTo(e0, "H:small"), "WORK_COMPLETE");
  EXPECT_FALSE(e0.closed());
  serve->Signal(SIGTERM);
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(serve->Wait(10s).exit_code, 0);
}

// An oversized request that arrives slowly: it is refused at its first bytes, and the
// connection's next GRAB, whose reply waits behind the rest of it, is not taken for a hung
// server (bytes arriving are an answer).
TEST_F(ProtocolTest, AnOversizedRequestArrivingSlowlyKeepsItsConnection) {
  WriteJob("guava");
  auto one = StartOneExecutor(1);
  ASSERT_NE(one.e0, nullptr);
  auto& serve = one.serve;
  auto& e0 = *one.e0;
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  std::string bytes =
      runner::Encode({.magic = Magic::kResponse,
                      .command = Command::kJobAssignUniq,
                      .args = {"H:slow", "build:guava", "u", std::string(8u << 20, 'x')}});
  e0.Write(std::string_view(bytes).substr(0, 4096));
  EXPECT_EQ(e0.NextText(), "WORK_EXCEPTION H:slow");
  EXPECT_EQ(e0.NextText(), "WORK_FAIL H:slow");
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  // The rest over 12 s, longer than the 10 s a GRAB may wait for its reply.
  constexpr std::size_t kChunk = 64u << 10;
  auto start = std::chrono::steady_clock::now();
  std::size_t chunks = (bytes.size() - 4096 + kChunk - 1) / kChunk;
  for (std::size_t i = 0; i < chunks; ++i) {
    e0.Write(std::string_view(bytes).substr(4096 + i * kChunk, kChunk));
    if (HasFailure()) break;
    std::this_thread::sleep_until(start + 12s * (i + 1) / chunks);
  }
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(e0.NextText(), "PRE_SLEEP");
  EXPECT_FALSE(e0.closed());
  EXPECT_THAT(serve->err(), ::testing::Not(HasSubstr("did not answer")));
  serve->Signal(SIGTERM);
  EXPECT_EQ(serve->Wait(10s).exit_code, 0) << serve->err();
}

// Fuzzed requests (tests/support/fuzz.h) to the executor and to the manager: each one gets a
// terminal packet, grabbing goes on, and the runner stays up.
TEST_F(ProtocolTest, EveryFuzzedRequestIsAnswered) {
  WriteJob("guava", "parameters: {A: {}, B: {choices: [x, y]}}\n");
  auto one = StartOneExecutor(1);
  ASSERT_NE(one.e0, nullptr);
  auto& serve = one.serve;
  auto& e0 = *one.e0;
  auto& manager = *one.manager;
  ASSERT_EQ(manager.NextText(), "PRE_SLEEP");
  const std::vector<std::string> corpus = {
      R"({"A": "1"})", R"({"A": 1, "B": "y", "ZUUL_X": true})", R"({})",
      R"({"name": "guava", "number": 1})",
      R"({"name": "guava", "number": "1", "html_description": "d"})"};
  const std::vector<std::string> words = {"{",
                                          "}",
                                          "\"",
                                          ":",
                                          ",",
                                          "[",
                                          "]",
                                          "null",
                                          "\\u0000",
                                          std::string(1, '\0'),
                                          "\xff",
                                          "/tmp",
                                          "..",
                                          "\"name\"",
                                          "\"number\"",
                                          "-1",
                                          "99999999999999999999"};
  testing::Mutator m(testing::FuzzSeed() + 4);
  int iterations = testing::FuzzIterations(3000);
  int builds = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0;
       i < iterations && std::chrono::steady_clock::now() - start < testing::FuzzTimeBudget();
       ++i) {
    std::string workload = m.Mutate(corpus[m.Below(corpus.size())], words);
    std::string handle = "H:" + std::to_string(i);
    if (m.OneIn(3)) {
      // To the manager: wake it, let it grab, give it a stop or a description.
      manager.Reply(Command::kNoop);
      ASSERT_EQ(manager.NextText(), "GRAB_JOB_UNIQ") << "iteration " << i << serve->err();
      std::string function = m.OneIn(2) ? "stop:n1" : "set_description:n1";
      manager.Reply(Command::kJobAssignUniq, {handle, function, "u", workload});
      std::string answer = AnswerTo(manager, handle);
      ASSERT_TRUE(answer == "WORK_FAIL" || answer == "WORK_COMPLETE")
          << answer << " for " << workload;
      ASSERT_EQ(manager.NextText(), "GRAB_JOB_UNIQ");  // its next one
      manager.Reply(Command::kNoJob);
      ASSERT_EQ(manager.NextText(), "PRE_SLEEP");
      continue;
    }
    ASSERT_EQ(e0.NextText(), "GRAB_JOB_UNIQ") << "iteration " << i << serve->err();
    std::string function = "build:guava";
    if (m.OneIn(8)) {
      function = m.Mutate(function, {":", "build:", "x"});
      std::erase(function, '\0');  // a NUL would end the argument on the wire
    }
    std::string unique = "u-" + std::to_string(i);
    e0.Reply(Command::kJobAssignUniq, {handle, function, unique, workload});
    std::string answer = AnswerTo(e0, handle);
    ASSERT_TRUE(answer == "WORK_FAIL" || answer == "WORK_COMPLETE")
        << answer << " for " << function << " " << workload << "\n"
        << serve->err();
    builds += answer == "WORK_COMPLETE" ? 1 : 0;
  }
  EXPECT_GT(builds, 0);  // some mutations still bind, and those builds run
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  EXPECT_TRUE(testing::ProcessAlive(serve->pid()));
  serve->Signal(SIGTERM);
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(serve->Wait(10s).exit_code, 0) << serve->err();
}

TEST_F(ProtocolTest, ReloadSendsOnlyTheDelta) {
  WriteJob("a");
  WriteJob("b");
  auto serve = Serve(1);
  auto conns = server_.Accept(2);
  ASSERT_EQ(conns.size(), 2u) << serve->err();
  auto& e0 = *conns.at("n1_exec-0");
  QuietManager(*conns.at("n1_manager"));
  EXPECT_THAT(Registration(e0, 2),
              ElementsAre("RESET_ABILITIES", "CAN_DO build:a", "CAN_DO build:b"));
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(e0.NextText(), "PRE_SLEEP");

  std::filesystem::remove(dir_ / "jobs/a.yaml");
  WriteJob("c");
  serve->Signal(SIGHUP);
  EXPECT_EQ(e0.NextText(), "CANT_DO build:a");
  EXPECT_EQ(e0.NextText(), "CAN_DO build:c");
  // A new function may have jobs waiting: the connection grabs again.
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(e0.NextText(), "PRE_SLEEP");

  // A broken file changes nothing.
  dir_.Write("jobs/broken.yaml", "name: broken\nsteps: [{run: 'x', retries: lots}]\n");
  serve->Signal(SIGHUP);
  EXPECT_EQ(e0.NextText(1500ms), "NONE");
  std::filesystem::remove(dir_ / "jobs/broken.yaml");

  // Nothing left: RESET_ABILITIES, never a CANT_DO for each.
  std::filesystem::remove(dir_ / "jobs/b.yaml");
  std::filesystem::remove(dir_ / "jobs/c.yaml");
  serve->Signal(SIGHUP);
  EXPECT_EQ(e0.NextText(), "RESET_ABILITIES");
  EXPECT_EQ(e0.NextText(1000ms), "NONE");
  serve->Signal(SIGTERM);
  EXPECT_EQ(serve->Wait(10s).exit_code, 0);
}

TEST_F(ProtocolTest, ReconnectRegistersAgainFromScratch) {
  WriteJob("guava");
  auto serve = Serve(1);
  auto conns = server_.Accept(2);
  ASSERT_EQ(conns.size(), 2u);
  QuietManager(*conns.at("n1_manager"));
  Registration(*conns.at("n1_exec-0"), 1);
  conns.at("n1_exec-0")->Close();
  auto again = server_.Accept(1);
  ASSERT_EQ(again.count("n1_exec-0"), 1u);
  auto& e0 = *again.at("n1_exec-0");
  EXPECT_THAT(Registration(e0, 1), ElementsAre("RESET_ABILITIES", "CAN_DO build:guava"));
  EXPECT_EQ(e0.NextText(), "GRAB_JOB_UNIQ");
  serve->Signal(SIGTERM);
  e0.Reply(Command::kNoJob);
  EXPECT_EQ(serve->Wait(10s).exit_code, 0);
}

}  // namespace
}  // namespace gearrun
