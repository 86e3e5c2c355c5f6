// GearmanConnection: one worker-side TCP connection to one Gearman server, under one client
// id, driven by an event loop (runner/worker.h) through poll().
//
// It owns the socket, the framing (runner/gearman_packet.h), the reconnect backoff and the
// functions registered on it, and keeps the contract's registration rules
// (shared/protocol.md) in one place:
//   - on every (re)connect: SET_CLIENT_ID, RESET_ABILITIES, then one CAN_DO per function;
//   - later changes as a delta: CAN_DO for added names, CANT_DO only for names registered on
//     this connection, RESET_ABILITIES when the set becomes empty;
//   - TCP keepalive (idle 30 s, interval 10 s, 3 probes);
//   - after a failure, the next attempt waits 1 s, doubling up to 30 s, jittered by ±20 %,
//     so a dead server costs next to no CPU; the backoff starts again from 1 s only once
//     the server has sent a packet (or a connection lasted 10 s without being given up as
//     unresponsive).
//
//   GearmanConnection c({"127.0.0.1", 4730}, "build-01_exec-0");
//   c.SetFunctions({"build:guava"});       // sent now if up, else on connect
//   loop: poll(c.fd(), c.PollEvents()) ... auto packets = c.OnReady(revents, now);
//
// Sends never block: bytes the socket does not take at once wait in a buffer until it is
// writable. Not thread-safe: one event-loop thread uses it.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "runner/config.h"
#include "runner/gearman_packet.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {

class GearmanConnection {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  enum class State { kDown, kConnecting, kUp };

  GearmanConnection(ServerAddress server, std::string client_id);

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] bool up() const { return state_ == State::kUp; }
  [[nodiscard]] const ServerAddress& server() const { return server_; }
  [[nodiscard]] const std::string& client_id() const { return client_id_; }
  // Counts connections made; a job handle is only valid on the generation it came from.
  [[nodiscard]] std::uint64_t generation() const { return generation_; }
  // The reason of the last failure, for logs.
  [[nodiscard]] const std::string& last_error() const { return last_error_; }
  // When bytes last arrived on this connection: a server streaming a long packet is
  // answering, even while a reply it owes is still behind those bytes.
  [[nodiscard]] TimePoint last_received() const { return last_received_; }

  // When down: the earliest time of the next attempt. Starts a non-blocking connect when
  // that time has come; returns true when the state changed.
  bool MaybeConnect(TimePoint now);
  [[nodiscard]] TimePoint next_attempt() const { return next_attempt_; }

  // -1 when down.
  [[nodiscard]] int fd() const { return fd_.get(); }
  // POLLIN, plus POLLOUT while connecting or while output waits.
  [[nodiscard]] short PollEvents() const;

  struct Ready {
    bool connected = false;       // the connection has just come up (registrations were sent)
    std::vector<Packet> packets;  // received, in order
    std::string error;            // non-empty: the connection was lost and is now down
  };
  // Handles what poll() reported for fd().
  Ready OnReady(short revents, TimePoint now);

  // The functions wanted on this connection; sends the difference when up.
  void SetFunctions(const std::set<std::string>& functions);
  [[nodiscard]] const std::set<std::string>& registered() const { return registered_; }
  [[nodiscard]] const std::set<std::string>& wanted() const { return wanted_; }

  // Queues a request packet (magic REQ); a no-op when not up.
  void Send(Command command, std::vector<std::string> args = {});
  // Whether output is still waiting to be written.
  [[nodiscard]] bool has_output() const { return !output_.empty(); }

  // Why a connection is dropped: kLost (it failed) or kUnresponsive (the server did not
  // answer in time). After kUnresponsive the backoff keeps growing however long the
  // connection was up, since a hung server still accepts connections; otherwise a connection
  // that lasted 10 s starts the backoff again from 1 s.
  enum class DropKind { kLost, kUnresponsive };
  // Closes the connection (if any) and schedules the next attempt after a backoff.
  void Drop(std::string reason, TimePoint now, DropKind kind = DropKind::kLost);
  // Closes without reconnecting.
  void Close();

 private:
  void Flush();
  void OnConnected();
  // Starts connecting to the next address of addresses_; down (with a backoff) when none
  // is left.
  void ConnectNext(TimePoint now);

  ServerAddress server_;
  std::string client_id_;
  State state_ = State::kDown;
  sandbox::UniqueFd fd_;
  std::uint64_t generation_ = 0;
  TimePoint next_attempt_{};
  TimePoint connect_deadline_{};
  TimePoint up_since_{};
  TimePoint last_received_{};
  std::vector<std::pair<sockaddr_storage, socklen_t>> addresses_;
  std::size_t next_address_ = 0;
  int failures_ = 0;
  std::string last_error_;
  std::string output_;
  PacketDecoder decoder_{Magic::kResponse};
  std::set<std::string> wanted_;
  std::set<std::string> registered_;
  std::minstd_rand jitter_;
};

// The wait before attempt number `failures` + 1: 1 s doubling up to 30 s, times
// `jitter_factor` (0.8 to 1.2).
[[nodiscard]] std::chrono::milliseconds ReconnectDelay(int failures, double jitter_factor);

}  // namespace gearrun::runner
