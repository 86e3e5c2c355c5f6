#include "sandbox/cgroup.h"

namespace gearrun::sandbox {
namespace {

// Splits `text` at spaces (mountinfo fields are separated by single spaces).
std::vector<std::string_view> SplitFields(std::string_view text) {
  std::vector<std::string_view> fields;
  while (!text.empty()) {
    std::size_t space = text.find(' ');
    fields.push_back(text.substr(0, space));
    if (space == std::string_view::npos) break;
    text.remove_prefix(space + 1);
  }
  return fields;
}

std::string Unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '3' &&
        text[i + 2] >= '0' && text[i + 2] <= '7' && text[i + 3] >= '0' && text[i + 3] <= '7') {
      int value = (text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0');
      out.push_back(static_cast<char>(value));
      i += 3;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

bool HasOption(std::string_view options, std::string_view wanted) {
  while (!options.empty()) {
    std::size_t comma = options.find(',');
    if (options.substr(0, comma) == wanted) return true;
    if (comma == std::string_view::npos) break;
    options.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view TrimTrailingSlashes(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

}  // namespace

std::vector<MountInfo> ParseMountInfo(std::string_view text) {
  std::vector<MountInfo> mounts;
  while (!text.empty()) {
    std::size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);

    std::vector<std::string_view> fields = SplitFields(line);
    // id parent major:minor root mount-point options [optional...] - fstype source super
    if (fields.size() < 6) continue;
    std::size_t dash = 6;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (dash + 3 >= fields.size()) continue;  // need fstype, source, super options
    MountInfo mount;
    mount.root = Unescape(fields[3]);
    mount.mount_point = Unescape(fields[4]);
    mount.fs_type = std::string(fields[dash + 1]);
    mount.super_options = std::string(fields[dash + 3]);
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

CgroupMounts FindCgroupMounts(const std::vector<MountInfo>& mounts) {
  CgroupMounts found;
  for (const MountInfo& mount : mounts) {
    if (mount.fs_type == "cgroup2") {
      if (!found.v2) found.v2 = mount;
    } else if (mount.fs_type == "cgroup") {
      if (!found.v1_memory && HasOption(mount.super_options, "memory")) found.v1_memory = mount;
      if (!found.v1_pids && HasOption(mount.super_options, "pids")) found.v1_pids = mount;
    }
  }
  return found;
}

ProcCgroup ParseProcCgroup(std::string_view text) {
  ProcCgroup result;
  while (!text.empty()) {
    std::size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    std::size_t first = line.find(':');
    if (first == std::string_view::npos) continue;
    std::size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view id = line.substr(0, first);
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string path(line.substr(second + 1));
    if (id == "0" && controllers.empty()) {
      result.v2_path = path;
      continue;
    }
    while (!controllers.empty()) {
      std::size_t comma = controllers.find(',');
      std::string_view controller = controllers.substr(0, comma);
      if (!controller.empty()) result.v1_paths.emplace(std::string(controller), path);
      if (comma == std::string_view::npos) break;
      controllers.remove_prefix(comma + 1);
    }
  }
  return result;
}

std::optional<std::string> CgroupDirectory(const MountInfo& mount, std::string_view path) {
  std::string_view root = TrimTrailingSlashes(mount.root);
  path = TrimTrailingSlashes(path);
  std::string_view relative;
  if (root == "/") {
    relative = path;
  } else if (path == root) {
    relative = "/";
  } else if (path.substr(0, root.size()) == root && path.size() > root.size() &&
             path[root.size()] == '/') {
    relative = path.substr(root.size());
  } else {
    return std::nullopt;
  }
  if (relative.empty() || relative.front() != '/') return std::nullopt;
  return JoinCgroupPath(mount.mount_point, relative);
}

std::string JoinCgroupPath(std::string_view base, std::string_view name) {
  base = TrimTrailingSlashes(base);
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  std::string out(base);
  if (name.empty()) return out;
  if (out.empty() || out.back() != '/') out.push_back('/');
  out.append(name);
  return out;
}

}  // namespace gearrun::sandbox
