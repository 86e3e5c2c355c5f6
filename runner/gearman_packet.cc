#include "runner/gearman_packet.h"

#include <libgearman-1.0/protocol.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace gearrun::runner {
namespace {

// The numbers are the protocol's; libgearman's enum is the reference.
#define GEARRUN_SAME_AS_LIBGEARMAN(ours, theirs) \
  static_assert(static_cast<int>(Command::ours) == static_cast<int>(theirs))
GEARRUN_SAME_AS_LIBGEARMAN(kCanDo, GEARMAN_COMMAND_CAN_DO);
GEARRUN_SAME_AS_LIBGEARMAN(kCantDo, GEARMAN_COMMAND_CANT_DO);
GEARRUN_SAME_AS_LIBGEARMAN(kResetAbilities, GEARMAN_COMMAND_RESET_ABILITIES);
GEARRUN_SAME_AS_LIBGEARMAN(kPreSleep, GEARMAN_COMMAND_PRE_SLEEP);
GEARRUN_SAME_AS_LIBGEARMAN(kNoop, GEARMAN_COMMAND_NOOP);
GEARRUN_SAME_AS_LIBGEARMAN(kSubmitJob, GEARMAN_COMMAND_SUBMIT_JOB);
GEARRUN_SAME_AS_LIBGEARMAN(kJobCreated, GEARMAN_COMMAND_JOB_CREATED);
GEARRUN_SAME_AS_LIBGEARMAN(kGrabJob, GEARMAN_COMMAND_GRAB_JOB);
GEARRUN_SAME_AS_LIBGEARMAN(kNoJob, GEARMAN_COMMAND_NO_JOB);
GEARRUN_SAME_AS_LIBGEARMAN(kJobAssign, GEARMAN_COMMAND_JOB_ASSIGN);
GEARRUN_SAME_AS_LIBGEARMAN(kWorkStatus, GEARMAN_COMMAND_WORK_STATUS);
GEARRUN_SAME_AS_LIBGEARMAN(kWorkComplete, GEARMAN_COMMAND_WORK_COMPLETE);
GEARRUN_SAME_AS_LIBGEARMAN(kWorkFail, GEARMAN_COMMAND_WORK_FAIL);
GEARRUN_SAME_AS_LIBGEARMAN(kEchoReq, GEARMAN_COMMAND_ECHO_REQ);
GEARRUN_SAME_AS_LIBGEARMAN(kEchoRes, GEARMAN_COMMAND_ECHO_RES);
GEARRUN_SAME_AS_LIBGEARMAN(kError, GEARMAN_COMMAND_ERROR);
GEARRUN_SAME_AS_LIBGEARMAN(kSetClientId, GEARMAN_COMMAND_SET_CLIENT_ID);
GEARRUN_SAME_AS_LIBGEARMAN(kWorkException, GEARMAN_COMMAND_WORK_EXCEPTION);
GEARRUN_SAME_AS_LIBGEARMAN(kWorkData, GEARMAN_COMMAND_WORK_DATA);
GEARRUN_SAME_AS_LIBGEARMAN(kWorkWarning, GEARMAN_COMMAND_WORK_WARNING);
GEARRUN_SAME_AS_LIBGEARMAN(kGrabJobUniq, GEARMAN_COMMAND_GRAB_JOB_UNIQ);
GEARRUN_SAME_AS_LIBGEARMAN(kJobAssignUniq, GEARMAN_COMMAND_JOB_ASSIGN_UNIQ);
GEARRUN_SAME_AS_LIBGEARMAN(kGrabJobAll, GEARMAN_COMMAND_GRAB_JOB_ALL);
GEARRUN_SAME_AS_LIBGEARMAN(kJobAssignAll, GEARMAN_COMMAND_JOB_ASSIGN_ALL);
#undef GEARRUN_SAME_AS_LIBGEARMAN

constexpr std::string_view kRequestMagic{"\0REQ", 4};
constexpr std::string_view kResponseMagic{"\0RES", 4};
constexpr std::size_t kHeaderSize = 12;

void PutBigEndian(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

std::uint32_t GetBigEndian(std::string_view in) {
  auto byte = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(in[i]));
  };
  return (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
}

}  // namespace

std::string CommandName(Command command) {
  switch (command) {
    case Command::kCanDo:
      return "CAN_DO";
    case Command::kCantDo:
      return "CANT_DO";
    case Command::kResetAbilities:
      return "RESET_ABILITIES";
    case Command::kPreSleep:
      return "PRE_SLEEP";
    case Command::kNoop:
      return "NOOP";
    case Command::kSubmitJob:
      return "SUBMIT_JOB";
    case Command::kJobCreated:
      return "JOB_CREATED";
    case Command::kGrabJob:
      return "GRAB_JOB";
    case Command::kNoJob:
      return "NO_JOB";
    case Command::kJobAssign:
      return "JOB_ASSIGN";
    case Command::kWorkStatus:
      return "WORK_STATUS";
    case Command::kWorkComplete:
      return "WORK_COMPLETE";
    case Command::kWorkFail:
      return "WORK_FAIL";
    case Command::kEchoReq:
      return "ECHO_REQ";
    case Command::kEchoRes:
      return "ECHO_RES";
    case Command::kError:
      return "ERROR";
    case Command::kSetClientId:
      return "SET_CLIENT_ID";
    case Command::kWorkException:
      return "WORK_EXCEPTION";
    case Command::kWorkData:
      return "WORK_DATA";
    case Command::kWorkWarning:
      return "WORK_WARNING";
    case Command::kGrabJobUniq:
      return "GRAB_JOB_UNIQ";
    case Command::kJobAssignUniq:
      return "JOB_ASSIGN_UNIQ";
    case Command::kGrabJobAll:
      return "GRAB_JOB_ALL";
    case Command::kJobAssignAll:
      return "JOB_ASSIGN_ALL";
  }
  return "COMMAND_" + std::to_string(static_cast<std::uint32_t>(command));
}

std::optional<std::size_t> ArgumentCount(Command command) {
  switch (command) {
    case Command::kResetAbilities:
    case Command::kPreSleep:
    case Command::kNoop:
    case Command::kGrabJob:
    case Command::kNoJob:
    case Command::kGrabJobUniq:
    case Command::kGrabJobAll:
      return 0;
    case Command::kCanDo:
    case Command::kCantDo:
    case Command::kJobCreated:
    case Command::kWorkFail:
    case Command::kEchoReq:
    case Command::kEchoRes:
    case Command::kSetClientId:
      return 1;
    case Command::kWorkComplete:
    case Command::kError:
    case Command::kWorkException:
    case Command::kWorkData:
    case Command::kWorkWarning:
      return 2;
    case Command::kSubmitJob:
    case Command::kJobAssign:
    case Command::kWorkStatus:
      return 3;
    case Command::kJobAssignUniq:
      return 4;
    case Command::kJobAssignAll:
      return 5;
  }
  return std::nullopt;
}

std::string Encode(const Packet& packet) {
  std::string data;
  for (std::size_t i = 0; i < packet.args.size(); ++i) {
    bool last = i + 1 == packet.args.size();
    if (!last && packet.args[i].find('\0') != std::string::npos) {
      std::fprintf(stderr, "gearrun: bug: NUL inside argument %zu of %s\n", i,
                   CommandName(packet.command).c_str());
      std::abort();
    }
    data += packet.args[i];
    if (!last) data.push_back('\0');
  }
  std::string out(packet.magic == Magic::kRequest ? kRequestMagic : kResponseMagic);
  PutBigEndian(out, static_cast<std::uint32_t>(packet.command));
  PutBigEndian(out, static_cast<std::uint32_t>(data.size()));
  return out + data;
}

void PacketDecoder::Feed(std::string_view bytes) {
  if (skip_ > 0) {
    std::size_t drop = static_cast<std::size_t>(std::min<std::uint64_t>(skip_, bytes.size()));
    bytes.remove_prefix(drop);
    skip_ -= drop;
  }
  buffer_.append(bytes);
}

void PacketDecoder::Consume(std::size_t bytes) {
  offset_ += bytes;
  // Compact now and then, so that the buffer does not grow with the connection's life.
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  } else if (offset_ > (1u << 16)) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
}

tl::expected<std::optional<Packet>, std::string> PacketDecoder::NextOversized(
    Command command, std::uint32_t size, std::string_view available) {
  // The arguments before the workload are short (a handle, a function name, a unique id);
  // they must be within the first 64 KiB.
  constexpr std::size_t kLeadingMax = 64u << 10;
  std::size_t leading = ArgumentCount(command).value_or(1) - 1;
  std::string_view data = available.substr(kHeaderSize);
  data = data.substr(0, std::min<std::size_t>(data.size(), size));
  std::vector<std::string> args;
  std::size_t used = 0;
  while (args.size() < leading) {
    auto nul = data.find('\0', used);
    if (nul == std::string_view::npos || nul >= kLeadingMax) {
      if (data.size() < kLeadingMax && data.size() < size) return std::nullopt;  // more to come
      return tl::unexpected(CommandName(command) + " packet of " + std::to_string(size) +
                            " bytes has no arguments in its first " + std::to_string(kLeadingMax) +
                            " bytes");
    }
    args.emplace_back(data.substr(used, nul - used));
    used = nul + 1;
  }
  args.emplace_back();  // the workload, dropped
  // Everything of the packet that is here goes now; the rest is dropped as it arrives.
  std::size_t here = data.size();
  skip_ = size - here;
  Consume(kHeaderSize + here);
  return Packet{.magic = expected_, .command = command, .args = std::move(args), .oversized = size};
}

tl::expected<std::optional<Packet>, std::string> PacketDecoder::Next() {
  if (skip_ > 0) return std::nullopt;  // the rest of an oversized packet has yet to pass
  std::string_view rest(buffer_);
  rest.remove_prefix(offset_);
  if (rest.size() < kHeaderSize) return std::nullopt;
  std::string_view magic = rest.substr(0, 4);
  if (magic != (expected_ == Magic::kRequest ? kRequestMagic : kResponseMagic)) {
    return tl::unexpected(std::string("not a Gearman packet (wrong magic bytes)"));
  }
  auto command = static_cast<Command>(GetBigEndian(rest.substr(4, 4)));
  std::uint32_t size = GetBigEndian(rest.substr(8, 4));
  if (size > kMaxPacketData) {
    if (command == Command::kJobAssign || command == Command::kJobAssignUniq ||
        command == Command::kJobAssignAll) {
      return NextOversized(command, size, rest);
    }
    return tl::unexpected(CommandName(command) + " packet of " + std::to_string(size) +
                          " bytes is larger than the limit of " + std::to_string(kMaxPacketData));
  }
  if (rest.size() < kHeaderSize + size) return std::nullopt;
  std::string_view data = rest.substr(kHeaderSize, size);

  Packet packet{.magic = expected_, .command = command, .args = {}};
  std::size_t count = ArgumentCount(command).value_or(data.empty() ? 0 : 1);
  for (std::size_t i = 0; i < count; ++i) {
    if (i + 1 == count) {
      packet.args.emplace_back(data);
      break;
    }
    auto nul = data.find('\0');
    if (nul == std::string_view::npos) {
      return tl::unexpected(CommandName(command) + " packet has " + std::to_string(i + 1) +
                            " arguments, expected " + std::to_string(count));
    }
    packet.args.emplace_back(data.substr(0, nul));
    data.remove_prefix(nul + 1);
  }
  Consume(kHeaderSize + size);
  return packet;
}

}  // namespace gearrun::runner
