// Gearman binary packets: the framing of the worker side of the protocol
// (http://gearman.org/protocol/): a 12-byte header ("\0REQ" or "\0RES", the command and the
// size of the data, both 32-bit big-endian) followed by the arguments separated by NUL
// bytes; the last argument (a workload or a result) may itself contain NULs.
//
// Why gearrun frames packets itself instead of using libgearman's worker: the contract
// (shared/protocol.md) needs RESET_ABILITIES on every (re)connect, registration deltas,
// registering every executor while only one of them grabs, WORK_EXCEPTION followed by
// WORK_FAIL, and never an abandoned GRAB; libgearman 1.1.20's worker API can do none of
// these (measured: docs/development/gearman-worker.md). The command numbers are checked
// against libgearman's own at compile time (gearman_packet.cc).
//
//   std::string bytes = Encode({Magic::kRequest, Command::kCanDo, {"build:guava"}});
//   PacketDecoder decoder(Magic::kResponse);
//   decoder.Feed(received);
//   while (auto packet = decoder.Next()) { ... }      // tl::expected<optional<Packet>>
//
// Pure values; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

namespace gearrun::runner {

enum class Magic { kRequest, kResponse };

enum class Command : std::uint32_t {
  kCanDo = 1,
  kCantDo = 2,
  kResetAbilities = 3,
  kPreSleep = 4,
  kNoop = 6,
  kSubmitJob = 7,
  kJobCreated = 8,
  kGrabJob = 9,
  kNoJob = 10,
  kJobAssign = 11,
  kWorkStatus = 12,
  kWorkComplete = 13,
  kWorkFail = 14,
  kEchoReq = 16,
  kEchoRes = 17,
  kError = 19,
  kSetClientId = 22,
  kWorkException = 25,
  kWorkData = 28,
  kWorkWarning = 29,
  kGrabJobUniq = 30,
  kJobAssignUniq = 31,
  kGrabJobAll = 39,
  kJobAssignAll = 40,
};

// "CAN_DO", "JOB_ASSIGN_UNIQ", ...; "COMMAND_<n>" for numbers gearrun does not know.
[[nodiscard]] std::string CommandName(Command command);

struct Packet {
  Magic magic = Magic::kRequest;
  Command command = Command::kNoop;
  std::vector<std::string> args;
  // A job assignment whose data was larger than kMaxPacketData: its last argument (the
  // workload) was dropped unread and is empty here; this is the size of the whole data part,
  // so that the request can be refused with WORK_EXCEPTION + WORK_FAIL. 0 otherwise.
  std::uint32_t oversized = 0;

  friend bool operator==(const Packet&, const Packet&) = default;
};

// How many arguments a command carries; nullopt for commands gearrun does not know (their
// data is then kept as one argument).
[[nodiscard]] std::optional<std::size_t> ArgumentCount(Command command);

// The bytes of a packet. Arguments other than the last must not contain NUL (a broken
// invariant: aborts).
[[nodiscard]] std::string Encode(const Packet& packet);

// The largest workload gearrun takes in a request: far beyond any set of build parameters
// (each value is at most 128 KiB anyway), small enough to hold for every connection.
inline constexpr std::uint32_t kMaxWorkloadBytes = 1u << 20;
// Largest data part held in memory: a workload and the arguments before it. A bigger job
// assignment is delivered without its workload (Packet::oversized) while the rest of it is
// skipped as it arrives; any other bigger packet is a protocol error (the connection is then
// dropped), never an unbounded allocation.
inline constexpr std::uint32_t kMaxPacketData = kMaxWorkloadBytes + (64u << 10);

// Splits a byte stream into packets. Errors (wrong magic, oversized packet that is not a job
// assignment, too few arguments) are fatal for the stream.
class PacketDecoder {
 public:
  explicit PacketDecoder(Magic expected) : expected_(expected) {}

  // Bytes of an oversized assignment's workload are dropped here, as they arrive.
  void Feed(std::string_view bytes);
  // The next complete packet; nullopt when more bytes are needed.
  [[nodiscard]] tl::expected<std::optional<Packet>, std::string> Next();
  // Bytes received but not yet returned as packets.
  [[nodiscard]] std::size_t buffered() const { return buffer_.size() - offset_; }

 private:
  // An oversized job assignment: its leading arguments (handle, function, unique) and the
  // number of bytes consumed, once they are all buffered; nullopt while more are needed.
  tl::expected<std::optional<Packet>, std::string> NextOversized(Command command,
                                                                 std::uint32_t size,
                                                                 std::string_view available);
  void Consume(std::size_t bytes);

  Magic expected_;
  std::string buffer_;
  std::size_t offset_ = 0;
  std::uint64_t skip_ = 0;  // bytes of an oversized workload still to drop
};

}  // namespace gearrun::runner
