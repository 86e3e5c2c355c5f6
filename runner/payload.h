// The JSON the Gearman side speaks (shared/protocol.md): payloads of build requests
// (WORK_DATA at start, WORK_COMPLETE at the end) and the workloads of stop:<node> and
// set_description:<node> requests.
//
// Payload keys: name, number, manager, worker, node_name, node_labels, url (when there is
// one); the final payload adds result, unique, duration_ms, reason and steps, and
// state_error when the build's log could not be written whole. Parameters
// are never part of a payload, so secret values cannot leak through one.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "runner/build_record.h"

namespace gearrun::runner {

struct PayloadContext {
  std::string manager;  // the node name: clients send stop:<manager>
  std::string worker;   // the executor's client id, <node>_exec-<i>
  std::string url;      // where the log can be read; empty: no "url" key
};

// WORK_DATA, sent as soon as the build has a number.
[[nodiscard]] std::string StartPayload(const BuildRecord& record, const PayloadContext& context);
// WORK_COMPLETE, for every build that ran.
[[nodiscard]] std::string FinalPayload(const BuildRecord& record, const PayloadContext& context);

// The other way round, for clients (`gearrun submit`): the record fields a final payload
// carries (job, number, node, result, reason, unique, duration, steps). Errors: not a JSON
// object, or no valid name, number and result.
[[nodiscard]] tl::expected<BuildRecord, std::string> ParseFinalPayload(std::string_view payload);

struct BuildReference {
  std::string name;
  std::int64_t number = 0;
  std::string html_description;  // set_description only
};

enum class ReferenceKind { kStop, kSetDescription };

// {"name": "<job>", "number": <n>} (number as integer or decimal string), plus
// "html_description" for set_description. Errors are one line, for WORK_EXCEPTION.
[[nodiscard]] tl::expected<BuildReference, std::string> ParseBuildReference(
    std::string_view workload, ReferenceKind kind);

}  // namespace gearrun::runner
