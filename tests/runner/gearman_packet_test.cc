#include "runner/gearman_packet.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runner/gearman_connection.h"

namespace gearrun::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(GearmanPacketTest, EncodesHeaderAndNulSeparatedArguments) {
  std::string bytes = Encode(
      {.magic = Magic::kRequest, .command = Command::kWorkStatus, .args = {"H:1", "0", "3"}});
  EXPECT_EQ(bytes, std::string("\0REQ\0\0\0\x0c\0\0\0\x07H:1\0"
                               "0\0"
                               "3",
                               19));
  EXPECT_EQ(Encode({.magic = Magic::kRequest, .command = Command::kGrabJobUniq, .args = {}}),
            std::string("\0REQ\0\0\0\x1e\0\0\0\0", 12));
}

TEST(GearmanPacketTest, DecodesAcrossPartialReadsAndKeepsNulsInTheLastArgument) {
  Packet assign{.magic = Magic::kResponse,
                .command = Command::kJobAssignUniq,
                .args = {"H:7", "build:guava", "u-1", std::string("{\"a\":\0\"b\"}", 10)}};
  std::string bytes =
      Encode(assign) + Encode({.magic = Magic::kResponse, .command = Command::kNoop, .args = {}});
  PacketDecoder decoder(Magic::kResponse);
  std::vector<Packet> got;
  for (char c : bytes) {
    decoder.Feed(std::string_view(&c, 1));
    auto next = decoder.Next();
    ASSERT_TRUE(next) << next.error();
    if (next->has_value()) got.push_back(**next);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], assign);
  EXPECT_EQ(got[1].command, Command::kNoop);
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(GearmanPacketTest, RejectsWrongMagicOversizedAndShortPackets) {
  PacketDecoder wrong(Magic::kResponse);
  wrong.Feed(Encode({.magic = Magic::kRequest, .command = Command::kNoop, .args = {}}));
  EXPECT_FALSE(wrong.Next());

  PacketDecoder huge(Magic::kResponse);
  huge.Feed(std::string("\0RES\0\0\0\x06\x7f\0\0\0", 12));
  auto big = huge.Next();
  ASSERT_FALSE(big);
  EXPECT_THAT(big.error(), HasSubstr("larger than the limit"));

  PacketDecoder shorter(Magic::kResponse);
  shorter.Feed(Encode({.magic = Magic::kResponse, .command = Command::kError, .args = {"only"}}));
  auto missing = shorter.Next();
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error(), HasSubstr("expected 2"));
}

// A request too large to hold is still a request: its handle comes out (so that it can be
// answered), its workload is dropped as it streams in, and what follows it is read as usual.
TEST(GearmanPacketTest, AnOversizedAssignmentComesOutWithoutItsWorkload) {
  std::string workload(3 * kMaxWorkloadBytes, 'x');
  std::string bytes = Encode({.magic = Magic::kResponse,
                              .command = Command::kJobAssignUniq,
                              .args = {"H:9", "build:guava", "u-9", workload}}) +
                      Encode({.magic = Magic::kResponse, .command = Command::kNoop, .args = {}});
  PacketDecoder decoder(Magic::kResponse);
  std::vector<Packet> got;
  std::size_t most_buffered = 0;
  for (std::size_t at = 0; at < bytes.size(); at += 65536) {
    decoder.Feed(std::string_view(bytes).substr(at, 65536));
    most_buffered = std::max(most_buffered, decoder.buffered());
    for (;;) {
      auto next = decoder.Next();
      ASSERT_TRUE(next) << next.error();
      if (!next->has_value()) break;
      got.push_back(**next);
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].command, Command::kJobAssignUniq);
  EXPECT_THAT(got[0].args, ElementsAre("H:9", "build:guava", "u-9", ""));
  EXPECT_EQ(got[0].oversized, workload.size() + 20);
  EXPECT_EQ(got[1].command, Command::kNoop);
  EXPECT_EQ(got[1].oversized, 0u);
  EXPECT_LE(most_buffered, 65536u);
  EXPECT_EQ(decoder.buffered(), 0u);

  // Arguments that never end are still a protocol error.
  PacketDecoder endless(Magic::kResponse);
  endless.Feed(std::string("\0RES\0\0\0\x0b\x10\0\0\0", 12) + std::string(70000, 'h'));
  auto bad = endless.Next();
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error(), HasSubstr("has no arguments in its first 65536 bytes"));
}

TEST(GearmanPacketTest, UnknownCommandsKeepTheirDataAsOneArgument) {
  PacketDecoder decoder(Magic::kResponse);
  decoder.Feed(
      std::string("\0RES\0\0\0\x63\0\0\0\x03"
                  "a\0b",
                  15));
  auto next = decoder.Next();
  ASSERT_TRUE(next && next->has_value());
  EXPECT_EQ((*next)->args, std::vector<std::string>{std::string("a\0b", 3)});
  EXPECT_EQ(CommandName((*next)->command), "COMMAND_99");
}

TEST(GearmanConnectionTest, ReconnectDelayDoublesToThirtySecondsWithJitter) {
  using std::chrono::milliseconds;
  EXPECT_EQ(ReconnectDelay(1, 1.0), milliseconds(1000));
  EXPECT_EQ(ReconnectDelay(2, 1.0), milliseconds(2000));
  EXPECT_EQ(ReconnectDelay(5, 1.0), milliseconds(16000));
  EXPECT_EQ(ReconnectDelay(6, 1.0), milliseconds(30000));
  EXPECT_EQ(ReconnectDelay(1000, 1.0), milliseconds(30000));
  EXPECT_EQ(ReconnectDelay(1000, 0.8), milliseconds(24000));
  EXPECT_EQ(ReconnectDelay(1, 1.2), milliseconds(1200));
}

}  // namespace
}  // namespace gearrun::runner
