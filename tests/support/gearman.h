// Test support: a real Gearman job server (gearmand) and a real Gearman client (libgearman),
// for integration tests of the Gearman executors.
//
//   testing::Gearmand gearmand;                      // 127.0.0.1, a free port, ready
//   ASSERT_TRUE(gearmand.ready()) << gearmand.log();
//   ... start the worker under test against gearmand.port() ...
//   ASSERT_TRUE(WaitFor([&] { return testing::WorkersFor(gearmand.port(), "build:hello") == 1; }));
//   testing::GearmanClient client(gearmand.port());
//   testing::ClientTrace trace = client.Submit("build:hello", R"({"WHO": "you"})");
//   EXPECT_EQ(trace.Kinds(), "DATA STATUS COMPLETE") << trace.Describe();
//
//   auto build = client.Start("build:slow", "{}");   // in flight on its own connection
//   ASSERT_TRUE(build->WaitForEvent(testing::ClientEvent::Kind::kCreated, 5s));
//   gearmand.Kill();                                  // ... and see what the build does
//
// Ownership: a Gearmand owns its gearmand process and the temporary folder with its log; both go
// when the object goes. A GearmanClient owns nothing but its port and options: each submission
// opens its own libgearman connection and closes it before returning. A PendingJob owns its
// connection and the thread that drives it; destroying it stops the thread (at most ~100 ms).
//
// Thread safety: Gearmand and GearmanClient are used from one thread at a time. The admin
// functions are independent and may run from any thread. A PendingJob records its events on
// its own thread; Snapshot and WaitForEvent may be called from any thread, Wait and the
// destructor from the owner's thread only.
//
// Errors are reported as values a test can assert on and print (ready() and log(), empty
// admin answers, ClientTrace::error); nothing here throws or aborts.
//
// No libgearman type appears here: the client and its callbacks live in gearman.cc. The
// client never reads GEARMAN_SERVERS: it talks to 127.0.0.1:port only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gearrun::testing {

class BackgroundCommand;
class TempDir;

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, closed).
// Another process may take it before the caller binds it. -1 when no socket could be bound.
int FreeLoopbackPort();

struct GearmandOptions {
  int port = 0;                         // 0: a free loopback port
  std::vector<std::string> extra_args;  // added to the command line, e.g. "--job-retries=1"
};

// A gearmand (/usr/sbin/gearmand) listening on 127.0.0.1, as a child of the test process (no
// --daemon), with one I/O thread, its log (at INFO) and pid file in a temporary folder.
class Gearmand {
 public:
  // Starts gearmand and waits (up to 10 s) until it answers the admin "version" command.
  // gearmand keeps retrying a port it cannot bind, so a port that another process holds
  // shows as ready() false after 10 s. Check ready(); log() says why it is false.
  explicit Gearmand(GearmandOptions options = {});
  ~Gearmand();  // SIGKILL and reap
  Gearmand(const Gearmand&) = delete;
  Gearmand& operator=(const Gearmand&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string address() const;  // "127.0.0.1:<port>"
  [[nodiscard]] int pid() const;              // -1 when not running
  // Whether the last start (constructor or Restart) answered "version" in time.
  [[nodiscard]] bool ready() const { return ready_; }
  // gearmand's log file, followed by what it printed on stderr when it ended.
  [[nodiscard]] std::string log() const;

  // Ends gearmand at once (SIGKILL, no shutdown) and reaps it. No-op when not running. Its
  // queue is lost (the builtin queue is in memory), its connections drop.
  void Kill();
  // Kills gearmand if it runs, then starts it again on the same port and waits (up to 10 s)
  // until ready. gearmand binds with SO_REUSEADDR, so the old connections' TIME_WAIT does
  // not hold it up, and retries by itself while the port is taken. Returns ready().
  bool Restart();

 private:
  bool Start();

  std::vector<std::string> extra_args_;
  int port_ = 0;
  bool ready_ = false;
  std::unique_ptr<TempDir> dir_;  // the log and pid file, across restarts
  std::unique_ptr<BackgroundCommand> process_;
  std::string last_stderr_;  // what the last gearmand printed on stderr, or why it did not start
};

// The text ("admin") protocol on 127.0.0.1:port. Each call opens its own connection, waits at
// most 5 s for the answer and closes it. On any failure (refused, timeout, malformed answer)
// the result is empty (or 0, false).

// One line of the "status" command: gearmand's counts for one function.
struct FunctionStatus {
  std::string function;
  int queued = 0;   // jobs gearmand holds for the function: waiting plus running (see
                    // AdminCancel for jobs it holds but will not run)
  int running = 0;  // of which a worker has taken
  int workers = 0;  // connections that registered the function (CAN_DO)
};
std::vector<FunctionStatus> AdminStatus(int port);

// One line of the "workers" command: one connection, worker or client (clients have no
// functions; the admin connection asking lists itself too, as client id "-").
struct WorkerInfo {
  std::string ip;
  std::string client_id;  // "-" when the connection did not set one
  std::vector<std::string> functions;
};
std::vector<WorkerInfo> AdminWorkers(int port);

// The workers count of `function` in "status"; 0 when gearmand does not know the function.
int WorkersFor(int port, std::string_view function);
// The queued count (waiting plus running) of `function` in "status"; 0 when unknown.
int QueuedFor(int port, std::string_view function);

// Cancels a job that waits in the queue ("cancel job <handle>"). True when gearmand answers
// "OK"; false for an unknown handle or no answer. gearmand 1.1.20 only marks the job: it
// stays in "status" (and a second cancel answers "OK" again) until a worker of the function
// asks for work, which drops it unrun. A foreground job whose client went away is treated
// the same way.
bool AdminCancel(int port, std::string_view handle);

// gearmand's answer to "version" ("OK 1.1.20+ds"), without the line end.
std::string AdminVersion(int port);

// One packet the client received for its task, in arrival order.
struct ClientEvent {
  enum class Kind { kCreated, kData, kWarning, kStatus, kComplete, kFail, kException };
  Kind kind = Kind::kCreated;
  std::string data;  // CREATED: the job handle; DATA, WARNING, COMPLETE: the payload;
                     // EXCEPTION: the exception text; FAIL: empty
  uint32_t numerator = 0, denominator = 0;  // STATUS only
};

// "CREATED", "DATA", ..., "EXCEPTION".
std::string_view KindName(ClientEvent::Kind kind);

// Everything one submission saw.
struct ClientTrace {
  std::vector<ClientEvent> events;
  bool timed_out = false;  // the deadline passed (or the caller stopped it) before the end
  std::string error;       // libgearman's message for a failed call; empty when none
  std::string handle;      // the job handle gearmand assigned; empty before JOB_CREATED

  // The last event, nullptr when none.
  [[nodiscard]] const ClientEvent* Last() const;
  [[nodiscard]] bool Completed() const;  // the last event is COMPLETE
  [[nodiscard]] bool Failed() const;     // the last event is FAIL
  // The kinds after CREATED, space separated: "DATA STATUS COMPLETE".
  [[nodiscard]] std::string Kinds() const;
  // The events of one kind, in order.
  [[nodiscard]] std::vector<ClientEvent> Of(ClientEvent::Kind kind) const;
  // Every event with its payload, the handle, timed_out and error: for failure messages.
  [[nodiscard]] std::string Describe() const;
};

struct ClientOptions {
  // Ask gearmand to forward WORK_EXCEPTION packets to this client (libgearman's
  // GEARMAN_CLIENT_EXCEPTION, the "exceptions" server option). gearmand 1.1.20 ends a job on
  // WORK_EXCEPTION; a client without this option is sent nothing at all for it (no FAIL), so
  // its foreground submission waits until its own timeout.
  bool exceptions = true;
};

class PendingJob;

// A libgearman client (gearman_client_st) of 127.0.0.1:port.
class GearmanClient {
 public:
  explicit GearmanClient(int port, ClientOptions options = {});
  ~GearmanClient();
  GearmanClient(const GearmanClient&) = delete;
  GearmanClient& operator=(const GearmanClient&) = delete;

  // Submits a foreground job (SUBMIT_JOB) and records every packet for it until the job ends
  // (COMPLETE, FAIL or EXCEPTION), an error, or `timeout` (then trace.timed_out). An empty
  // `unique` lets libgearman make up a UUID; gearmand merges foreground jobs of one function
  // that share a unique, so every client of the merged job sees the same packets.
  ClientTrace Submit(std::string function, std::string workload, std::string unique = "",
                     std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // Submits like Submit, on a connection and thread of its own, and returns at once. The job
  // runs until it ends or the PendingJob stops it (Wait's timeout, or destruction); stopping
  // closes the connection, which gearmand sees as the client going away.
  std::unique_ptr<PendingJob> Start(std::string function, std::string workload,
                                    std::string unique = "");

  // Submits a background job (SUBMIT_JOB_BG); returns its handle, empty on failure (see
  // last_error()).
  std::string SubmitBackground(std::string function, std::string workload, std::string unique = "");
  // libgearman's message for the last failed SubmitBackground; empty when it succeeded.
  [[nodiscard]] std::string last_error() const;

 private:
  int port_;
  ClientOptions options_;
  std::string last_error_;
};

// A foreground submission in flight (see GearmanClient::Start).
class PendingJob {
 public:
  ~PendingJob();  // stops the submission if still running, and joins its thread
  PendingJob(const PendingJob&) = delete;
  PendingJob& operator=(const PendingJob&) = delete;

  // What the client has received so far.
  [[nodiscard]] ClientTrace Snapshot() const;
  // Waits until an event of `kind` has arrived (true), or the submission ended without one or
  // `timeout` passed (false).
  bool WaitForEvent(ClientEvent::Kind kind, std::chrono::milliseconds timeout) const;
  // Waits until the submission ends; after `timeout` stops it and sets timed_out. Returns the
  // final trace. May be called again; later calls return the same trace at once.
  ClientTrace Wait(std::chrono::milliseconds timeout);

 private:
  friend class GearmanClient;
  struct State;
  explicit PendingJob(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
  std::thread thread_;
};

}  // namespace gearrun::testing
