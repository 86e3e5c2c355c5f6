// The Gearman test helpers (tests/support/gearman.h) against a real gearmand and a small
// libgearman worker written here, so that later tests of the executors can trust them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libgearman/gearman.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/command.h"
#include "tests/support/gearman.h"

namespace gearrun {
namespace {

using ::testing::AllOf;
using testing::ClientTrace;
using ::testing::Contains;
using ::testing::Field;
using testing::GearmanClient;
using testing::Gearmand;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::WaitFor;
using Kind = testing::ClientEvent::Kind;
using namespace std::chrono_literals;

// A libgearman worker on a thread of its own, with four functions:
//   echo_test   sends DATA "working", STATUS 1/2, completes with the workload
//   fail_test   sends an EXCEPTION "it broke", then fails
//   refuse_test fails (WORK_FAIL only)
//   block_test  sends DATA "started", waits for Release(), completes with the workload
// Registered under the client id given; counts the jobs it ran. The destructor stops it
// within about 100 ms.
class TestWorker {
 public:
  TestWorker(int port, const std::string& id) {
    if (::getenv("GEARMAN_SERVERS") != nullptr) ::unsetenv("GEARMAN_SERVERS");
    worker_ = gearman_worker_create(nullptr);
    gearman_worker_remove_servers(worker_);
    ok_ = gearman_success(
        gearman_worker_add_server(worker_, "127.0.0.1", static_cast<in_port_t>(port)));
    // One job at a time, assigned with the plain JOB_ASSIGN.
    gearman_worker_remove_options(worker_, GEARMAN_WORKER_GRAB_ALL);
    ok_ = ok_ && gearman_success(gearman_worker_set_identifier(worker_, id.data(), id.size()));
    gearman_worker_set_timeout(worker_, 100);
    auto add = [&](const char* function, gearman_worker_fn* fn) {
      ok_ = ok_ && gearman_success(gearman_worker_add_function(worker_, function, 0, fn, this));
    };
    add("echo_test", Echo);
    add("fail_test", Fail);
    add("refuse_test", Refuse);
    add("block_test", Block);
    thread_ = std::thread([this] {
      while (!stop_) {
        gearman_return_t rc = gearman_worker_work(worker_);
        // Between jobs the usual answer is a timeout; after gearmand went away, a refused
        // connection, which must not become a busy loop.
        if (rc != GEARMAN_SUCCESS && rc != GEARMAN_TIMEOUT) std::this_thread::sleep_for(50ms);
      }
    });
  }
  ~TestWorker() {
    stop_ = true;
    thread_.join();
    gearman_worker_free(worker_);
  }
  TestWorker(const TestWorker&) = delete;
  TestWorker& operator=(const TestWorker&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] int jobs() const { return jobs_; }
  void Release() { release_ = true; }

 private:
  static void* Result(gearman_job_st* job, size_t* result_size, gearman_return_t* ret) {
    // libgearman frees the result with free().
    size_t size = gearman_job_workload_size(job);
    void* result = std::malloc(size == 0 ? 1 : size);
    if (size > 0) std::memcpy(result, gearman_job_workload(job), size);
    *result_size = size;
    *ret = GEARMAN_SUCCESS;
    return result;
  }
  static void* Echo(gearman_job_st* job, void* context, size_t* result_size,
                    gearman_return_t* ret) {
    ++static_cast<TestWorker*>(context)->jobs_;
    gearman_job_send_data(job, "working", 7);
    gearman_job_send_status(job, 1, 2);
    return Result(job, result_size, ret);
  }
  static void* Fail(gearman_job_st* job, void* context, size_t* result_size,
                    gearman_return_t* ret) {
    ++static_cast<TestWorker*>(context)->jobs_;
    gearman_job_send_exception(job, "it broke", 8);
    *result_size = 0;
    *ret = GEARMAN_WORK_FAIL;
    return nullptr;
  }
  static void* Refuse(gearman_job_st*, void* context, size_t* result_size, gearman_return_t* ret) {
    ++static_cast<TestWorker*>(context)->jobs_;
    *result_size = 0;
    *ret = GEARMAN_WORK_FAIL;
    return nullptr;
  }
  static void* Block(gearman_job_st* job, void* context, size_t* result_size,
                     gearman_return_t* ret) {
    auto* self = static_cast<TestWorker*>(context);
    ++self->jobs_;
    gearman_job_send_data(job, "started", 7);
    while (!self->release_ && !self->stop_) std::this_thread::sleep_for(10ms);
    return Result(job, result_size, ret);
  }

  gearman_worker_st* worker_ = nullptr;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> release_{false};
  std::atomic<int> jobs_{0};
  std::thread thread_;
};

class GearmanSupportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Like scripts/test: a developer's GEARMAN_SERVERS must not reach the clients here.
    ::unsetenv("GEARMAN_SERVERS");
    ASSERT_TRUE(gearmand_.ready()) << gearmand_.log();
  }

  // Waits until the worker has registered `function` with gearmand.
  bool WorkerRegistered(std::string_view function = "echo_test") {
    return WaitFor([&] { return testing::WorkersFor(port(), function) == 1; }, 5s);
  }
  int port() const { return gearmand_.port(); }

  Gearmand gearmand_;
};

TEST_F(GearmanSupportTest, SubmitRecordsDataStatusCompleteInOrder) {
  TestWorker worker(port(), "worker-a");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered());

  GearmanClient client(port());
  ClientTrace trace = client.Submit("echo_test", "hello", "", 10s);

  ASSERT_EQ(trace.Kinds(), "DATA STATUS COMPLETE") << trace.Describe();
  EXPECT_TRUE(trace.Completed());
  EXPECT_FALSE(trace.Failed());
  EXPECT_FALSE(trace.timed_out);
  EXPECT_EQ(trace.error, "");
  ASSERT_EQ(trace.events.size(), 4u) << trace.Describe();
  EXPECT_EQ(trace.events[0].kind, Kind::kCreated);
  EXPECT_THAT(trace.handle, StartsWith("H:"));
  EXPECT_EQ(trace.events[0].data, trace.handle);
  EXPECT_EQ(trace.events[1].data, "working");
  EXPECT_EQ(trace.events[2].numerator, 1u);
  EXPECT_EQ(trace.events[2].denominator, 2u);
  EXPECT_EQ(trace.Last()->data, "hello");
}

TEST_F(GearmanSupportTest, AdminStatusAndWorkersShowTheWorker) {
  TestWorker worker(port(), "worker-b");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered());

  auto status = testing::AdminStatus(port());
  EXPECT_THAT(status, Contains(AllOf(Field(&testing::FunctionStatus::function, "echo_test"),
                                     Field(&testing::FunctionStatus::queued, 0),
                                     Field(&testing::FunctionStatus::running, 0),
                                     Field(&testing::FunctionStatus::workers, 1))));
  EXPECT_EQ(testing::WorkersFor(port(), "block_test"), 1);
  EXPECT_EQ(testing::WorkersFor(port(), "no_such_function"), 0);

  auto workers = testing::AdminWorkers(port());
  const testing::WorkerInfo* ours = nullptr;
  for (const auto& info : workers) {
    if (info.client_id == "worker-b") ours = &info;
  }
  ASSERT_NE(ours, nullptr) << workers.size() << " connections, none named worker-b";
  EXPECT_EQ(ours->ip, "127.0.0.1");
  EXPECT_THAT(ours->functions, ::testing::UnorderedElementsAre("echo_test", "fail_test",
                                                               "refuse_test", "block_test"));
  // The admin connection that asked lists itself: no id, no functions.
  EXPECT_THAT(workers, Contains(Field(&testing::WorkerInfo::client_id, "-")));

  EXPECT_THAT(testing::AdminVersion(port()), StartsWith("OK "));
}

TEST_F(GearmanSupportTest, KillAndRestartOnTheSamePort) {
  // A connected worker leaves the server side of its connection behind when gearmand dies,
  // which is what makes binding the same port again interesting.
  TestWorker worker(port(), "worker-c");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered());
  const int old_port = port();
  const int old_pid = gearmand_.pid();

  gearmand_.Kill();
  EXPECT_EQ(gearmand_.pid(), -1);
  EXPECT_FALSE(testing::ProcessAlive(old_pid));
  EXPECT_EQ(testing::AdminVersion(old_port), "");
  EXPECT_TRUE(testing::AdminStatus(old_port).empty());

  ASSERT_TRUE(gearmand_.Restart()) << gearmand_.log();
  EXPECT_EQ(port(), old_port);
  EXPECT_NE(gearmand_.pid(), old_pid);
  EXPECT_EQ(gearmand_.address(), "127.0.0.1:" + std::to_string(old_port));
  EXPECT_THAT(testing::AdminVersion(port()), StartsWith("OK "));
  // The worker reconnects by itself and registers again; the status answers with it.
  EXPECT_TRUE(WorkerRegistered()) << gearmand_.log();

  GearmanClient client(port());
  EXPECT_TRUE(client.Submit("echo_test", "again", "", 10s).Completed());
}

TEST_F(GearmanSupportTest, BackgroundJobWaitsInTheQueueUntilCancelled) {
  GearmanClient client(port());
  std::string handle = client.SubmitBackground("echo_test", "payload");
  ASSERT_THAT(handle, StartsWith("H:")) << client.last_error();

  auto status = testing::AdminStatus(port());
  EXPECT_THAT(status, Contains(AllOf(Field(&testing::FunctionStatus::function, "echo_test"),
                                     Field(&testing::FunctionStatus::queued, 1),
                                     Field(&testing::FunctionStatus::running, 0),
                                     Field(&testing::FunctionStatus::workers, 0))));

  EXPECT_TRUE(testing::AdminCancel(port(), handle));
  EXPECT_FALSE(testing::AdminCancel(port(), "H:no-such-job:1"));
  // gearmand only marks the job; the first worker that asks for work makes it drop it, unrun.
  EXPECT_EQ(testing::QueuedFor(port(), "echo_test"), 1);
  TestWorker worker(port(), "worker-g");
  ASSERT_TRUE(worker.ok());
  EXPECT_TRUE(WaitFor([&] { return testing::QueuedFor(port(), "echo_test") == 0; }));
  EXPECT_TRUE(WorkerRegistered());
  EXPECT_EQ(worker.jobs(), 0);
}

// gearmand 1.1.20 ends a job on WORK_EXCEPTION and tells only the clients that set the
// "exceptions" option; any other client of the job hears nothing, not even WORK_FAIL.
TEST_F(GearmanSupportTest, ExceptionEndsTheJobButReachesOnlyClientsThatAskForIt) {
  TestWorker worker(port(), "worker-d");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered("fail_test"));

  ClientTrace with = GearmanClient(port()).Submit("fail_test", "x", "", 10s);
  EXPECT_EQ(with.Kinds(), "EXCEPTION") << with.Describe();
  EXPECT_EQ(with.Last()->data, "it broke") << with.Describe();
  EXPECT_FALSE(with.Failed());
  EXPECT_EQ(with.error, "");

  ClientTrace without =
      GearmanClient(port(), {.exceptions = false}).Submit("fail_test", "x", "", 1s);
  EXPECT_TRUE(without.timed_out) << without.Describe();
  EXPECT_EQ(without.Kinds(), "") << without.Describe();
  EXPECT_THAT(without.handle, StartsWith("H:"));
  EXPECT_EQ(worker.jobs(), 2);
  EXPECT_EQ(testing::QueuedFor(port(), "fail_test"), 0) << "gearmand has dropped the job";
}

// A plain WORK_FAIL reaches every client.
TEST_F(GearmanSupportTest, FailReachesClientsWithAndWithoutExceptions) {
  TestWorker worker(port(), "worker-h");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered("refuse_test"));

  ClientTrace with = GearmanClient(port()).Submit("refuse_test", "x", "", 10s);
  ClientTrace without =
      GearmanClient(port(), {.exceptions = false}).Submit("refuse_test", "x", "", 10s);
  EXPECT_EQ(with.Kinds(), "FAIL") << with.Describe();
  EXPECT_TRUE(with.Failed());
  EXPECT_FALSE(with.Completed());
  EXPECT_EQ(without.Kinds(), "FAIL") << without.Describe();
  EXPECT_FALSE(without.timed_out);
}

TEST_F(GearmanSupportTest, PendingJobsRunSideBySide) {
  TestWorker worker(port(), "worker-e");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered("block_test"));
  GearmanClient client(port());

  auto blocked = client.Start("block_test", "first");
  ASSERT_TRUE(blocked->WaitForEvent(Kind::kData, 5s)) << blocked->Snapshot().Describe();
  // Only one worker: a second job waits in gearmand's queue meanwhile.
  auto queued = client.Start("block_test", "second");
  ASSERT_TRUE(queued->WaitForEvent(Kind::kCreated, 5s)) << queued->Snapshot().Describe();
  EXPECT_TRUE(WaitFor([&] { return testing::QueuedFor(port(), "block_test") == 2; }));
  EXPECT_EQ(blocked->Snapshot().Kinds(), "DATA");
  EXPECT_FALSE(blocked->WaitForEvent(Kind::kComplete, 200ms));

  worker.Release();
  ClientTrace first = blocked->Wait(5s);
  ClientTrace second = queued->Wait(5s);
  EXPECT_EQ(first.Kinds(), "DATA COMPLETE") << first.Describe();
  EXPECT_EQ(first.Last()->data, "first");
  EXPECT_EQ(second.Kinds(), "DATA COMPLETE") << second.Describe();
  EXPECT_EQ(second.Last()->data, "second");
  EXPECT_NE(first.handle, second.handle);
}

TEST_F(GearmanSupportTest, PendingJobWaitTimesOutAndStops) {
  GearmanClient client(port());
  auto job = client.Start("echo_test", "x");
  ASSERT_TRUE(job->WaitForEvent(Kind::kCreated, 5s)) << job->Snapshot().Describe();
  EXPECT_EQ(testing::QueuedFor(port(), "echo_test"), 1);

  auto start = std::chrono::steady_clock::now();
  ClientTrace trace = job->Wait(300ms);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(trace.timed_out) << trace.Describe();
  EXPECT_EQ(trace.Kinds(), "");
  EXPECT_LT(took, 2s);
  EXPECT_TRUE(job->Wait(0ms).timed_out) << "a second Wait returns the same trace";

  // A job destroyed while in flight stops, too.
  start = std::chrono::steady_clock::now();
  client.Start("echo_test", "y").reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);

  // Both clients have gone, so gearmand will not run their jobs: a worker that comes along
  // makes it drop them.
  TestWorker worker(port(), "worker-i");
  ASSERT_TRUE(worker.ok());
  EXPECT_TRUE(WaitFor([&] { return testing::QueuedFor(port(), "echo_test") == 0; }));
  EXPECT_EQ(worker.jobs(), 0);
}

TEST_F(GearmanSupportTest, PendingJobSeesGearmandDie) {
  TestWorker worker(port(), "worker-f");
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(WorkerRegistered("block_test"));
  auto job = GearmanClient(port()).Start("block_test", "x");
  ASSERT_TRUE(job->WaitForEvent(Kind::kData, 5s)) << job->Snapshot().Describe();

  gearmand_.Kill();
  ClientTrace trace = job->Wait(5s);
  EXPECT_FALSE(trace.timed_out) << trace.Describe();
  EXPECT_EQ(trace.Kinds(), "DATA") << trace.Describe();
  EXPECT_THAT(trace.error, HasSubstr("LOST_CONNECTION")) << trace.Describe();
}

TEST(GearmanClientTest, NoServerIsAnErrorNotAHang) {
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  auto start = std::chrono::steady_clock::now();
  ClientTrace trace = GearmanClient(port).Submit("echo_test", "x", "", 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 6s);
  EXPECT_FALSE(trace.error.empty()) << trace.Describe();
  EXPECT_TRUE(trace.events.empty());
  EXPECT_EQ(GearmanClient(port, {.exceptions = false}).SubmitBackground("echo_test", "x"), "");
  EXPECT_TRUE(testing::AdminStatus(port).empty());
  EXPECT_FALSE(testing::AdminCancel(port, "H:nowhere:1"));
}

TEST(GearmandTest, StartsOnAGivenPort) {
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  Gearmand gearmand({.port = port});
  ASSERT_TRUE(gearmand.ready()) << gearmand.log();
  EXPECT_EQ(gearmand.port(), port);
  EXPECT_THAT(gearmand.log(), HasSubstr("Listening on 127.0.0.1:" + std::to_string(port)));
  int pid = gearmand.pid();
  {
    Gearmand other;  // a free port of its own; ending it leaves the first alone
    ASSERT_TRUE(other.ready()) << other.log();
    EXPECT_NE(other.port(), port);
  }
  EXPECT_TRUE(testing::ProcessAlive(pid));
  EXPECT_THAT(testing::AdminVersion(port), StartsWith("OK "));
}

}  // namespace
}  // namespace gearrun
