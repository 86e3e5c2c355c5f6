#include "runner/git.h"

#include <fcntl.h>
#include <git2.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runner/build_log.h"
#include "sandbox/unique_fd.h"

namespace gearrun::runner {

namespace fs = std::filesystem;

GitLibrary::GitLibrary() {
  if (git_libgit2_init() < 0) {
    const git_error* error = git_error_last();
    std::fprintf(stderr, "gearrun: cannot initialize libgit2: %s\n",
                 error != nullptr && error->message != nullptr ? error->message : "unknown error");
    std::abort();
  }
}

GitLibrary::~GitLibrary() { git_libgit2_shutdown(); }

namespace {

// Submodules of submodules of ...: a cycle in .gitmodules must not recurse forever.
constexpr int kMaxSubmoduleDepth = 8;

template <auto Free>
struct GitDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using Repository = std::unique_ptr<git_repository, GitDeleter<git_repository_free>>;
using Remote = std::unique_ptr<git_remote, GitDeleter<git_remote_free>>;
using Object = std::unique_ptr<git_object, GitDeleter<git_object_free>>;
using Reference = std::unique_ptr<git_reference, GitDeleter<git_reference_free>>;
using RevWalk = std::unique_ptr<git_revwalk, GitDeleter<git_revwalk_free>>;
using PackBuilder = std::unique_ptr<git_packbuilder, GitDeleter<git_packbuilder_free>>;
using Odb = std::unique_ptr<git_odb, GitDeleter<git_odb_free>>;
using Tree = std::unique_ptr<git_tree, GitDeleter<git_tree_free>>;
using Blob = std::unique_ptr<git_blob, GitDeleter<git_blob_free>>;
using ReferenceIterator =
    std::unique_ptr<git_reference_iterator, GitDeleter<git_reference_iterator_free>>;
using Config = std::unique_ptr<git_config, GitDeleter<git_config_free>>;
using ConfigIterator = std::unique_ptr<git_config_iterator, GitDeleter<git_config_iterator_free>>;
using TreeEntry = std::unique_ptr<git_tree_entry, GitDeleter<git_tree_entry_free>>;

void ReplaceAll(std::string& text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// Where the userinfo of a scheme://userinfo@host/... URL is: [first, at), `at` being the
// '@'. nullopt when the URL has none.
std::optional<std::pair<size_t, size_t>> UserInfoSpan(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  size_t first = scheme_end + 3;
  size_t authority_end = url.find_first_of("/?#", first);
  std::string_view authority =
      url.substr(first, authority_end == std::string_view::npos ? url.npos : authority_end - first);
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::nullopt;
  return std::pair{first, first + at};
}

std::string_view UserInfo(std::string_view url) {
  auto span = UserInfoSpan(url);
  return span ? url.substr(span->first, span->second - span->first) : std::string_view{};
}

// libgit2's last error as one line, with whatever of `url`'s credentials it might quote
// replaced.
std::string GitMessage(std::string_view url) {
  const git_error* error = git_error_last();
  std::string text =
      error != nullptr && error->message != nullptr ? error->message : "unknown libgit2 error";
  git_error_clear();
  ReplaceAll(text, "\r\n", "; ");
  ReplaceAll(text, "\n", "; ");
  while (!text.empty() && (text.back() == ' ' || text.back() == ';')) text.pop_back();
  std::string_view user_info = UserInfo(url);
  if (!user_info.empty()) {
    ReplaceAll(text, url, RedactUrl(url));
    ReplaceAll(text, std::string(user_info) + "@", "");
    size_t colon = user_info.find(':');
    std::string_view secret =
        colon == std::string_view::npos ? user_info : user_info.substr(colon + 1);
    // A bare user name is only a secret when it is a token, and tokens are long; replacing a
    // short word everywhere would garble the message for nothing.
    if (colon != std::string_view::npos || secret.size() >= 8) ReplaceAll(text, secret, "***");
  }
  return text;
}

// What of `url` may be written to disk or shown: no credentials, no secret values.
std::string Shown(std::string_view url, const std::vector<std::string>& secrets) {
  return MaskSecrets(RedactUrl(url), secrets);
}

std::string OidHex(const git_oid& oid) {
  char hex[GIT_OID_HEXSZ + 1] = {};
  git_oid_tostr(hex, sizeof(hex), &oid);
  return hex;
}

bool IsCommitId(std::string_view ref) {
  if (ref.size() != GIT_OID_HEXSZ) return false;
  for (char c : ref) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

// FNV-1a, 64 bits: stable across builds and machines, which std::hash is not.
uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

// The key of a mirror cache: 32 random bytes in <cache_root>/.mirror-key (mode 0600), made
// once. Empty when it can be neither read nor made.
std::string MirrorKey(const fs::path& cache_root) {
  const fs::path path = cache_root / ".mirror-key";
  auto read = [&path]() -> std::string {
    sandbox::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[64];
    if (!fd || ::read(fd.get(), buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf))) return "";
    return std::string(buf, sizeof(buf));
  };
  if (std::string key = read(); !key.empty()) return key;
  std::error_code ec;
  fs::create_directories(cache_root, ec);
  unsigned char random[32];
  if (::getrandom(random, sizeof(random), 0) != static_cast<ssize_t>(sizeof(random))) return "";
  std::string hex;
  for (unsigned char b : random) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex += kDigits[b >> 4];
    hex += kDigits[b & 0xf];
  }
  // Made whole under another name, then linked into place: a reader never sees half a key,
  // and of two makers at once the first one's key wins.
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    sandbox::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd || !sandbox::WriteAll(fd.get(), hex) || ::fsync(fd.get()) != 0) {
      ::unlink(tmp.c_str());
      return "";
    }
  }
  (void)::link(tmp.c_str(), path.c_str());
  ::unlink(tmp.c_str());
  return read();
}

// 16 hex digits of SHA-1(key of the cache + text); SHA-1 of the text alone when there is no
// key.
std::string KeyedHash(const fs::path& cache_root, std::string_view text) {
  GitLibrary library;
  std::string data = MirrorKey(cache_root) + std::string(text);
  git_oid oid{};
  if (git_odb_hash(&oid, data.data(), data.size(), GIT_OBJECT_BLOB) != 0) {
    git_error_clear();
    return "";
  }
  return OidHex(oid).substr(0, 16);
}

enum class LockMode { kShared, kExclusive };

fs::path LockPathFor(const fs::path& mirror) {
  fs::path normal = mirror.lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  return normal.string() + ".lock";
}

// Blocks until the lock is held; held until the fd is closed.
tl::expected<sandbox::UniqueFd, std::string> LockMirror(const fs::path& mirror, LockMode mode) {
  fs::path path = LockPathFor(mirror);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) {
    return tl::unexpected("cannot create git cache " + path.parent_path().string() + ": " +
                          ec.message());
  }
  sandbox::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return tl::unexpected("cannot open " + path.string() + ": " + std::strerror(errno));
  int rc;
  do {
    rc = ::flock(fd.get(), mode == LockMode::kShared ? LOCK_SH : LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return tl::unexpected("cannot lock " + path.string() + ": " + std::strerror(errno));
  return fd;
}

tl::expected<Repository, std::string> OpenMirror(const fs::path& mirror) {
  git_repository* raw = nullptr;
  if (git_repository_open_bare(&raw, mirror.c_str()) != 0) {
    return tl::unexpected("cannot open git mirror " + mirror.string() + ": " + GitMessage(""));
  }
  return Repository(raw);
}

// For ssh: the agent's keys, once (libgit2 asks again after a refusal, and would forever).
// Anything else (https user and password) comes from the URL, which libgit2 applies itself.
int AcquireCredentials(git_credential** out, const char* /*url*/, const char* username_from_url,
                       unsigned int allowed_types, void* payload) {
  int& attempts = *static_cast<int*>(payload);
  if (attempts++ > 0) return GIT_PASSTHROUGH;
  const char* user = username_from_url != nullptr ? username_from_url : "git";
  if ((allowed_types & GIT_CREDENTIAL_SSH_KEY) != 0) {
    return git_credential_ssh_key_from_agent(out, user);
  }
  if ((allowed_types & GIT_CREDENTIAL_USERNAME) != 0) return git_credential_username_new(out, user);
  return GIT_PASSTHROUGH;
}

struct FetchStats {
  size_t received_objects = 0;
  size_t received_bytes = 0;
};

// Sets a config variable of `repo` (in its own config file).
tl::expected<void, std::string> SetConfig(git_repository* repo, const char* name,
                                          const std::string& value) {
  git_config* raw = nullptr;
  if (git_repository_config(&raw, repo) != 0) return tl::unexpected(GitMessage(""));
  Config config(raw);
  if (git_config_set_string(config.get(), name, value.c_str()) != 0) {
    return tl::unexpected(GitMessage(""));
  }
  return {};
}

// `url` rewritten by the longest matching url.<base>.insteadOf of the git configuration, as git
// and libgit2 would. Done here rather than by libgit2 because libgit2 1.5 leaks about 20 KB
// for every config entry its pattern does not match (git_regexp_match does not free the pcre2
// match data on a mismatch), on every remote it creates or looks up; a daemon checking out
// thousands of builds cannot afford that. So this file never has libgit2 match config names
// against a pattern: no git_remote_create*/lookup with insteadOf, no git_branch_delete, no
// git_submodule_*.
std::string ApplyInsteadOf(git_repository* repo, const std::string& url) {
  git_config* raw = nullptr;
  if (git_repository_config_snapshot(&raw, repo) != 0) {
    git_error_clear();
    return url;
  }
  Config config(raw);
  git_config_iterator* raw_it = nullptr;
  if (git_config_iterator_new(&raw_it, config.get()) != 0) {
    git_error_clear();
    return url;
  }
  ConfigIterator it(raw_it);
  std::string best_base;
  size_t best_length = 0;
  git_config_entry* entry = nullptr;
  while (git_config_next(&entry, it.get()) == 0) {
    // Section and key come lower-cased; the base in between is as written.
    std::string_view name = entry->name;
    constexpr std::string_view kPrefix = "url.", kSuffix = ".insteadof";
    if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix) || entry->value == nullptr) {
      continue;
    }
    std::string_view prefix = entry->value;
    if (prefix.size() > best_length && std::string_view(url).starts_with(prefix)) {
      best_length = prefix.size();
      best_base = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
    }
  }
  git_error_clear();
  return best_length == 0 ? url : best_base + url.substr(best_length);
}

// Fetches `refspecs` from `url` (used as is) into `repo` through an in-memory remote, so that
// the URL (and its credentials) is never written to the repository's config.
tl::expected<FetchStats, std::string> Fetch(git_repository* repo, const std::string& url,
                                            std::vector<std::string> refspecs,
                                            git_fetch_prune_t prune) {
  git_remote_create_options create;
  git_remote_create_options_init(&create, GIT_REMOTE_CREATE_OPTIONS_VERSION);
  create.repository = repo;
  create.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
  git_remote* raw = nullptr;
  if (git_remote_create_with_opts(&raw, url.c_str(), &create) != 0) {
    return tl::unexpected(GitMessage(url));
  }
  Remote remote(raw);
  int attempts = 0;
  git_fetch_options options;
  git_fetch_options_init(&options, GIT_FETCH_OPTIONS_VERSION);
  options.prune = prune;
  options.update_fetchhead = 0;
  options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
  options.proxy_opts.type = GIT_PROXY_AUTO;
  options.callbacks.credentials = AcquireCredentials;
  options.callbacks.payload = &attempts;
  std::vector<char*> specs;
  for (auto& spec : refspecs) specs.push_back(spec.data());
  git_strarray array{specs.data(), specs.size()};
  if (git_remote_fetch(remote.get(), &array, &options, "fetch") != 0) {
    return tl::unexpected(GitMessage(url));
  }
  const git_indexer_progress* progress = git_remote_stats(remote.get());
  FetchStats stats{.received_objects = progress->received_objects,
                   .received_bytes = progress->received_bytes};
  // Follow the remote's HEAD, so that an empty ref means its default branch. Best effort: a
  // remote without a HEAD leaves the mirror's as it was.
  git_buf head = GIT_BUF_INIT;
  if (git_repository_is_bare(repo) && git_remote_default_branch(&head, remote.get()) == 0) {
    git_repository_set_head(repo, head.ptr);
  }
  git_buf_dispose(&head);
  git_error_clear();
  return stats;
}

// FetchMirror without taking libgit2 up and down.
tl::expected<GitFetchResult, std::string> FetchMirrorImpl(const fs::path& cache_root,
                                                          const std::string& url,
                                                          const std::vector<std::string>& secrets) {
  const std::string where = Shown(url, secrets);
  GitFetchResult result{.mirror = MirrorPathFor(cache_root, url, secrets)};
  auto lock = LockMirror(result.mirror, LockMode::kExclusive);
  if (!lock) return tl::unexpected(lock.error());
  const std::string failed = "cannot fetch " + where + " into " + result.mirror.string() + ": ";

  git_repository* raw = nullptr;
  bool created = false;
  std::error_code ec;
  if (!fs::exists(result.mirror, ec) ||
      git_repository_open_bare(&raw, result.mirror.c_str()) != 0) {
    // New, or left half-made by a process that died while creating it: start afresh.
    git_error_clear();
    fs::remove_all(result.mirror, ec);
    if (ec) return tl::unexpected(failed + "cannot remove a broken mirror: " + ec.message());
    git_repository_init_options init;
    git_repository_init_options_init(&init, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    init.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
    if (git_repository_init_ext(&raw, result.mirror.c_str(), &init) != 0) {
      return tl::unexpected(failed + GitMessage(url));
    }
    created = true;
  }
  Repository repo(raw);
  if (created) {
    // For a person looking at the mirror with the git CLI; fetches use an in-memory remote.
    auto origin = SetConfig(repo.get(), "remote.origin.url", where);
    if (origin) origin = SetConfig(repo.get(), "remote.origin.fetch", "+refs/*:refs/*");
    if (!origin) {
      repo.reset();
      fs::remove_all(result.mirror, ec);
      return tl::unexpected(failed + origin.error());
    }
  }
  const std::string rewritten = ApplyInsteadOf(repo.get(), url);
  auto stats = Fetch(repo.get(), rewritten, {"+refs/*:refs/*"}, GIT_FETCH_PRUNE);
  if (!stats) {
    // Do not leave an empty mirror behind for a URL that may be a typo.
    if (created) {
      repo.reset();
      fs::remove_all(result.mirror, ec);
    }
    std::string as = rewritten == url ? "" : "(as " + Shown(rewritten, secrets) + ") ";
    return tl::unexpected(failed + as + stats.error());
  }
  result.received_objects = stats->received_objects;
  result.received_bytes = stats->received_bytes;
  return result;
}

// The commit `ref` names in `repo`; `where` (a URL without credentials, or a mirror's path)
// goes into the messages.
tl::expected<git_oid, std::string> Resolve(git_repository* repo, std::string_view ref,
                                           const std::string& where) {
  if (IsCommitId(ref)) {
    std::string hex(ref);
    git_oid oid;
    git_object* raw = nullptr;
    if (git_oid_fromstr(&oid, hex.c_str()) != 0 ||
        git_object_lookup(&raw, repo, &oid, GIT_OBJECT_COMMIT) != 0) {
      git_error_clear();
      return tl::unexpected("commit " + hex + " not found in " + where);
    }
    git_object_free(raw);
    return oid;
  }
  const std::string name = ref.empty() ? "HEAD" : std::string(ref);
  for (const std::string& candidate : {"refs/heads/" + name, "refs/tags/" + name, name}) {
    git_reference* raw = nullptr;
    if (git_reference_lookup(&raw, repo, candidate.c_str()) != 0) {
      git_error_clear();
      continue;
    }
    Reference reference(raw);
    git_object* peeled = nullptr;
    if (git_reference_peel(&peeled, reference.get(), GIT_OBJECT_COMMIT) != 0) {
      return tl::unexpected(candidate + " in " + where +
                            " does not point at a commit: " + GitMessage(""));
    }
    Object commit(peeled);
    return *git_object_id(commit.get());
  }
  git_object* raw = nullptr;
  if (git_revparse_single(&raw, repo, name.c_str()) == 0) {
    Object object(raw);
    git_object* peeled = nullptr;
    if (git_object_peel(&peeled, object.get(), GIT_OBJECT_COMMIT) == 0) {
      Object commit(peeled);
      return *git_object_id(commit.get());
    }
  }
  git_error_clear();
  if (ref.empty()) return tl::unexpected(where + " has no default branch (HEAD); name a ref");
  return tl::unexpected("ref '" + name + "' not found in " + where +
                        " (no branch, tag, ref or commit of that name)");
}

// Copies the history of `commit` from `from` into `to`, leaving out what `to`'s refs already
// reach: for a commit that no branch or tag reaches (a refs/changes/... or refs/zuul/...
// ref, or a bare commit id), which fetching branches and tags does not bring.
tl::expected<void, std::string> CopyCommit(git_repository* from, git_repository* to,
                                           const git_oid& commit) {
  git_revwalk* raw_walk = nullptr;
  if (git_revwalk_new(&raw_walk, from) != 0) return tl::unexpected(GitMessage(""));
  RevWalk walk(raw_walk);
  if (git_revwalk_push(walk.get(), &commit) != 0) return tl::unexpected(GitMessage(""));
  git_odb* raw_odb = nullptr;
  if (git_repository_odb(&raw_odb, from) != 0) return tl::unexpected(GitMessage(""));
  Odb from_odb(raw_odb);
  git_reference_iterator* raw_it = nullptr;
  if (git_reference_iterator_new(&raw_it, to) == 0) {
    ReferenceIterator it(raw_it);
    git_reference* raw_ref = nullptr;
    while (git_reference_next(&raw_ref, it.get()) == 0) {
      Reference ref(raw_ref);
      git_object* peeled = nullptr;
      if (git_reference_peel(&peeled, ref.get(), GIT_OBJECT_COMMIT) != 0) continue;
      Object object(peeled);
      if (git_odb_exists(from_odb.get(), git_object_id(object.get())) != 0) {
        git_revwalk_hide(walk.get(), git_object_id(object.get()));
      }
    }
  }
  git_error_clear();
  git_packbuilder* raw_pb = nullptr;
  if (git_packbuilder_new(&raw_pb, from) != 0) return tl::unexpected(GitMessage(""));
  PackBuilder pack(raw_pb);
  fs::path pack_dir = fs::path(git_repository_path(to)) / "objects" / "pack";
  if (git_packbuilder_insert_walk(pack.get(), walk.get()) != 0 ||
      git_packbuilder_write(pack.get(), pack_dir.c_str(), 0, nullptr, nullptr) != 0) {
    return tl::unexpected(GitMessage(""));
  }
  if (git_repository_odb(&raw_odb, to) != 0) return tl::unexpected(GitMessage(""));
  Odb to_odb(raw_odb);
  if (git_odb_refresh(to_odb.get()) != 0) return tl::unexpected(GitMessage(""));
  return {};
}

// Points dest's `origin` at the URL (without credentials), for the build's own git commands.
tl::expected<void, std::string> SetOrigin(git_repository* repo, const std::string& url) {
  if (auto set = SetConfig(repo, "remote.origin.url", url); !set) return set;
  git_config* raw = nullptr;
  if (git_repository_config_snapshot(&raw, repo) != 0) return tl::unexpected(GitMessage(""));
  Config config(raw);
  git_config_entry* entry = nullptr;
  if (git_config_get_entry(&entry, config.get(), "remote.origin.fetch") == 0) {
    git_config_entry_free(entry);
    return {};
  }
  git_error_clear();
  return SetConfig(repo, "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*");
}

// Copies the object files of `from` (a repository's objects folder) into `to`, as hard links
// where the file system allows (object files never change), as copies where it does not.
tl::expected<void, std::string> LinkObjects(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  bool link = true;
  for (fs::recursive_directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path target = to / it->path().lexically_relative(from);
    if (it->is_directory(ec)) {
      fs::create_directories(target, ec);
      if (ec) break;
      continue;
    }
    if (!it->is_regular_file(ec) || fs::exists(target, ec)) continue;
    if (link && ::link(it->path().c_str(), target.c_str()) == 0) continue;
    if (link && errno != EXDEV && errno != EPERM && errno != EMLINK) {
      return tl::unexpected("cannot link " + it->path().string() + " to " + target.string() + ": " +
                            std::strerror(errno));
    }
    link = false;
    fs::copy_file(it->path(), target, ec);
    if (ec) break;
  }
  if (ec) return tl::unexpected("cannot copy " + from.string() + ": " + ec.message());
  return {};
}

// Makes `dest` a repository holding `commit` (from the mirror), its HEAD detached there and
// its tracked files those of the commit.
tl::expected<void, std::string> MakeWorkingTree(const fs::path& mirror_path, git_repository* mirror,
                                                const git_oid& commit, const fs::path& dest,
                                                const std::string& where) {
  const std::string failed =
      "cannot check out " + OidHex(commit) + " of " + where + " into " + dest.string() + ": ";
  std::error_code ec;
  const bool exists = fs::exists(dest, ec);
  if (exists && !fs::is_directory(dest, ec)) {
    return tl::unexpected(failed + "it exists and is not a folder");
  }
  const bool fresh = !exists || fs::is_empty(dest, ec);
  git_repository* raw = nullptr;
  if (fresh) {
    // What git_clone does for a local path (a new repository, the mirror's object files
    // linked in), minus the local branch it would make and nothing would update, and minus
    // the remote it would create (see ApplyInsteadOf for why).
    git_repository_init_options init;
    git_repository_init_options_init(&init, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    init.flags = GIT_REPOSITORY_INIT_MKPATH;
    if (git_repository_init_ext(&raw, dest.c_str(), &init) != 0) {
      return tl::unexpected(failed + GitMessage(""));
    }
  } else if (git_repository_open_ext(&raw, dest.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) !=
             0) {
    git_error_clear();
    return tl::unexpected(failed +
                          "it is neither empty nor a git repository; empty the workspace "
                          "(workspace: {clean: true}) or check out into another path");
  }
  Repository repo(raw);
  if (git_repository_is_bare(repo.get())) {
    return tl::unexpected(failed + "it is a bare repository");
  }
  if (fresh) {
    auto linked =
        LinkObjects(mirror_path / "objects", fs::path(git_repository_path(repo.get())) / "objects");
    if (!linked) return tl::unexpected(failed + linked.error());
  }
  // origin's branches and the tags, as in a clone (with every object already there when
  // fresh, this only writes refs).
  auto fetched = Fetch(repo.get(), mirror_path.string(),
                       {"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
                       GIT_FETCH_NO_PRUNE);
  if (!fetched) return tl::unexpected(failed + "fetching from the mirror: " + fetched.error());
  if (auto origin = SetOrigin(repo.get(), where); !origin) {
    return tl::unexpected(failed + "setting origin: " + origin.error());
  }
  git_odb* raw_odb = nullptr;
  if (git_repository_odb(&raw_odb, repo.get()) != 0) return tl::unexpected(failed + GitMessage(""));
  Odb odb(raw_odb);
  if (git_odb_exists(odb.get(), &commit) == 0) {
    if (auto copied = CopyCommit(mirror, repo.get(), commit); !copied) {
      return tl::unexpected(failed + "copying from the mirror: " + copied.error());
    }
  }
  git_object* raw_commit = nullptr;
  if (git_object_lookup(&raw_commit, repo.get(), &commit, GIT_OBJECT_COMMIT) != 0) {
    return tl::unexpected(failed + GitMessage(""));
  }
  Object target(raw_commit);
  git_checkout_options checkout;
  git_checkout_options_init(&checkout, GIT_CHECKOUT_OPTIONS_VERSION);
  checkout.checkout_strategy = GIT_CHECKOUT_FORCE;
  if (git_checkout_tree(repo.get(), target.get(), &checkout) != 0 ||
      git_repository_set_head_detached(repo.get(), &commit) != 0) {
    return tl::unexpected(failed + GitMessage(""));
  }
  return {};
}

// `url` of a submodule as .gitmodules has it, made absolute against the superproject's URL
// the way git does: "../lib.git" next to "https://host/org/app.git" is
// "https://host/org/lib.git".
tl::expected<std::string, std::string> ResolveSubmoduleUrl(std::string_view parent,
                                                           std::string_view url) {
  if (!url.starts_with("./") && !url.starts_with("../")) return std::string(url);
  std::string base(parent);
  while (!base.empty() && base.back() == '/') base.pop_back();
  size_t scheme_end = base.find("://");
  size_t floor = scheme_end == std::string::npos ? 0 : scheme_end + 3;
  char separator = '/';
  while (true) {
    if (url.starts_with("./")) {
      url.remove_prefix(2);
    } else if (url.starts_with("../")) {
      url.remove_prefix(3);
      size_t cut = base.find_last_of(scheme_end == std::string::npos ? "/:" : "/");
      if (cut == std::string::npos || cut < floor) {
        return tl::unexpected("cannot resolve submodule URL relative to " + RedactUrl(parent));
      }
      separator = base[cut];
      base.resize(cut);
    } else {
      break;
    }
  }
  return base + separator + std::string(url);
}

tl::expected<GitCheckoutResult, std::string> CheckoutImpl(const fs::path& cache_root,
                                                          const GitCheckoutRequest& request,
                                                          int level);

struct SubmoduleEntry {
  std::string path;
  std::string url;
};

// The submodules .gitmodules declares, by name.
tl::expected<std::map<std::string, SubmoduleEntry>, std::string> ReadGitmodules(
    const fs::path& file) {
  std::map<std::string, SubmoduleEntry> submodules;
  std::error_code ec;
  if (!fs::exists(file, ec)) return submodules;
  git_config* raw = nullptr;
  if (git_config_open_ondisk(&raw, file.c_str()) != 0) return tl::unexpected(GitMessage(""));
  Config config(raw);
  git_config_iterator* raw_it = nullptr;
  if (git_config_iterator_new(&raw_it, config.get()) != 0) return tl::unexpected(GitMessage(""));
  ConfigIterator it(raw_it);
  git_config_entry* entry = nullptr;
  while (git_config_next(&entry, it.get()) == 0) {
    // submodule.<name>.path, where <name> may itself hold dots.
    std::string_view name = entry->name;
    constexpr std::string_view kPrefix = "submodule.";
    size_t key = name.rfind('.');
    if (!name.starts_with(kPrefix) || key <= kPrefix.size() || entry->value == nullptr) continue;
    std::string submodule(name.substr(kPrefix.size(), key - kPrefix.size()));
    std::string_view field = name.substr(key + 1);
    if (field == "path") submodules[submodule].path = entry->value;
    if (field == "url") submodules[submodule].url = entry->value;
  }
  git_error_clear();
  return submodules;
}

// Checks out the submodules of the commit just checked out in request.dest, as `git submodule
// update --init --recursive` would, each through its own mirror. Reads .gitmodules and the
// commit's tree itself rather than through git_submodule_* (see ApplyInsteadOf for why).
tl::expected<void, std::string> CheckOutSubmodules(const fs::path& cache_root,
                                                   const GitCheckoutRequest& request,
                                                   const git_oid& commit, int level) {
  const std::string where = Shown(request.url, request.secrets);
  auto declared = ReadGitmodules(request.dest / ".gitmodules");
  if (!declared) {
    return tl::unexpected("cannot read .gitmodules of " + where + ": " + declared.error());
  }
  if (declared->empty()) return {};
  git_repository* raw = nullptr;
  if (git_repository_open_ext(&raw, request.dest.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) !=
      0) {
    return tl::unexpected("cannot open " + request.dest.string() + ": " + GitMessage(""));
  }
  Repository repo(raw);
  git_commit* raw_commit = nullptr;
  git_tree* raw_tree = nullptr;
  if (git_commit_lookup(&raw_commit, repo.get(), &commit) != 0) {
    return tl::unexpected("cannot read " + OidHex(commit) + ": " + GitMessage(""));
  }
  int rc = git_commit_tree(&raw_tree, raw_commit);
  git_commit_free(raw_commit);
  if (rc != 0) return tl::unexpected("cannot read " + OidHex(commit) + ": " + GitMessage(""));
  Tree tree(raw_tree);
  for (const auto& [name, submodule] : *declared) {
    const fs::path relative = submodule.path;
    if (submodule.path.empty()) continue;
    // A path of the commit's own tree, so that a .gitmodules cannot aim outside dest.
    if (relative.is_absolute() || relative.lexically_normal() != relative ||
        *relative.begin() == "..") {
      return tl::unexpected("submodule path '" + submodule.path + "' of " + where +
                            " leaves the working tree");
    }
    git_tree_entry* raw_entry = nullptr;
    if (git_tree_entry_bypath(&raw_entry, tree.get(), submodule.path.c_str()) != 0) {
      git_error_clear();  // declared, but not in this commit
      continue;
    }
    TreeEntry entry(raw_entry);
    if (git_tree_entry_filemode(entry.get()) != GIT_FILEMODE_COMMIT) continue;
    const std::string what = "submodule " + submodule.path + " of " + where + ": ";
    if (submodule.url.empty()) return tl::unexpected(what + "no url in .gitmodules");
    auto url = ResolveSubmoduleUrl(request.url, submodule.url);
    if (!url) return tl::unexpected(what + url.error());
    // What `git submodule init` records, for git commands in the build's steps.
    auto init =
        SetConfig(repo.get(), ("submodule." + name + ".url").c_str(), Shown(*url, request.secrets));
    if (init) init = SetConfig(repo.get(), ("submodule." + name + ".active").c_str(), "true");
    if (!init) return tl::unexpected(what + init.error());
    GitCheckoutRequest inner{.url = *url,
                             .ref = OidHex(*git_tree_entry_id(entry.get())),
                             .dest = request.dest / submodule.path,
                             .depth = request.depth,
                             .submodules = true,
                             .secrets = request.secrets};
    auto done = CheckoutImpl(cache_root, inner, level + 1);
    if (!done) return tl::unexpected(what + done.error());
  }
  return {};
}

tl::expected<GitCheckoutResult, std::string> CheckoutImpl(const fs::path& cache_root,
                                                          const GitCheckoutRequest& request,
                                                          int level) {
  const std::string where = Shown(request.url, request.secrets);
  if (level > kMaxSubmoduleDepth) {
    return tl::unexpected("submodules nested more than " + std::to_string(kMaxSubmoduleDepth) +
                          " deep at " + where);
  }
  GitCheckoutResult result{.mirror = MirrorPathFor(cache_root, request.url, request.secrets)};
  git_oid oid{};
  auto lock = LockMirror(result.mirror, LockMode::kShared);
  if (!lock) return tl::unexpected(lock.error());
  // An exact commit that the mirror already has needs no fetch: such builds work offline.
  bool have = false;
  std::error_code ec;
  if (IsCommitId(request.ref) && fs::exists(result.mirror, ec)) {
    if (auto mirror = OpenMirror(result.mirror); mirror) {
      have = Resolve(mirror->get(), request.ref, where).has_value();
    }
  }
  if (!have) {
    lock->reset();  // the fetch takes it exclusively
    auto fetched = FetchMirrorImpl(cache_root, request.url, request.secrets);
    if (!fetched) return tl::unexpected(fetched.error());
    result.received_objects = fetched->received_objects;
    lock = LockMirror(result.mirror, LockMode::kShared);
    if (!lock) return tl::unexpected(lock.error());
  }
  {
    auto mirror = OpenMirror(result.mirror);
    if (!mirror) return tl::unexpected(mirror.error());
    auto commit = Resolve(mirror->get(), request.ref, where);
    if (!commit) return tl::unexpected(commit.error());
    auto made = MakeWorkingTree(result.mirror, mirror->get(), *commit, request.dest, where);
    if (!made) return tl::unexpected(made.error());
    oid = *commit;
  }
  // Each submodule locks its own mirror; the superproject's is released first, so that a
  // submodule of the same URL cannot wait for this very call.
  lock->reset();
  if (request.submodules) {
    if (auto submodules = CheckOutSubmodules(cache_root, request, oid, level); !submodules) {
      return tl::unexpected(submodules.error());
    }
  }
  result.commit = OidHex(oid);
  return result;
}

struct ExportState {
  git_repository* repo;
  fs::path root;
  std::string error;
};

int ExportEntry(const char* parent, const git_tree_entry* entry, void* payload) {
  auto& state = *static_cast<ExportState*>(payload);
  const std::string name = git_tree_entry_name(entry);
  const fs::path path = state.root / parent / name;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    state.error = "unsafe file name in tree: " + std::string(parent) + name;
    return -1;
  }
  const git_filemode_t mode = git_tree_entry_filemode(entry);
  if (mode == GIT_FILEMODE_TREE || mode == GIT_FILEMODE_COMMIT) {
    if (::mkdir(path.c_str(), 0755) != 0) {
      state.error = "cannot create " + path.string() + ": " + std::strerror(errno);
      return -1;
    }
    return 0;
  }
  git_blob* raw = nullptr;
  if (git_blob_lookup(&raw, state.repo, git_tree_entry_id(entry)) != 0) {
    state.error = GitMessage("");
    return -1;
  }
  Blob blob(raw);
  std::string_view content(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                           static_cast<size_t>(git_blob_rawsize(blob.get())));
  if (mode == GIT_FILEMODE_LINK) {
    if (::symlink(std::string(content).c_str(), path.c_str()) != 0) {
      state.error = "cannot create link " + path.string() + ": " + std::strerror(errno);
      return -1;
    }
    return 0;
  }
  const mode_t file_mode = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
  sandbox::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, file_mode));
  if (!fd || !sandbox::WriteAll(fd.get(), content)) {
    state.error = "cannot write " + path.string() + ": " + std::strerror(errno);
    return -1;
  }
  return 0;
}

}  // namespace

std::string RedactUrl(std::string_view url) {
  auto span = UserInfoSpan(url);
  if (!span) return std::string(url);
  return std::string(url.substr(0, span->first)) + std::string(url.substr(span->second + 1));
}

fs::path MirrorPathFor(const fs::path& cache_root, std::string_view url,
                       const std::vector<std::string>& secrets) {
  std::string key = Shown(url, secrets);
  while (!key.empty() && key.back() == '/') key.pop_back();
  // A URL with a secret in it is told apart by a keyed hash of the whole URL: masked, two
  // repositories could look alike (a secret "1" in .../1.git and another "2" in .../2.git),
  // and unkeyed, the hash would let anyone who sees the name try short secrets offline.
  std::string redacted = RedactUrl(url);
  while (!redacted.empty() && redacted.back() == '/') redacted.pop_back();
  std::string hex = redacted == key ? "" : KeyedHash(cache_root, redacted);
  std::string_view rest = key;
  size_t cut = rest.find_last_of("/:");
  if (cut != std::string_view::npos) rest.remove_prefix(cut + 1);
  if (rest.ends_with(".git")) rest.remove_suffix(4);
  std::string name;
  for (char c : rest) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
    name += keep ? c : '_';
    if (name.size() == 40) break;
  }
  if (name.empty() || name.front() == '.') name.insert(0, "repo");
  if (hex.empty()) {
    char hash[17];
    std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(Fnv1a(key)));
    hex = hash;
  }
  return cache_root / (name + "-" + hex);
}

tl::expected<GitFetchResult, std::string> FetchMirror(const fs::path& cache_root,
                                                      std::string_view url,
                                                      const std::vector<std::string>& secrets) {
  GitLibrary library;
  auto fetched = FetchMirrorImpl(cache_root, std::string(url), secrets);
  if (!fetched) return tl::unexpected(MaskSecrets(fetched.error(), secrets));
  return fetched;
}

tl::expected<std::string, std::string> ResolveInMirror(const fs::path& mirror,
                                                       std::string_view ref) {
  GitLibrary library;
  auto lock = LockMirror(mirror, LockMode::kShared);
  if (!lock) return tl::unexpected(lock.error());
  auto repo = OpenMirror(mirror);
  if (!repo) return tl::unexpected(repo.error());
  auto commit = Resolve(repo->get(), ref, "mirror " + mirror.string());
  if (!commit) return tl::unexpected(commit.error());
  return OidHex(*commit);
}

tl::expected<GitCheckoutResult, std::string> CheckoutFromMirror(const fs::path& cache_root,
                                                                const GitCheckoutRequest& request) {
  GitLibrary library;
  auto done = CheckoutImpl(cache_root, request, 0);
  // Every message: libgit2's may quote the URL, a ref or a path made from them.
  if (!done) return tl::unexpected(MaskSecrets(done.error(), request.secrets));
  return done;
}

tl::expected<void, std::string> ExportTree(const fs::path& mirror, std::string_view commit,
                                           const fs::path& dest_dir, const fs::path& subdir) {
  GitLibrary library;
  const std::string failed = "cannot export " + std::string(commit) + " of mirror " +
                             mirror.string() + " into " + dest_dir.string() + ": ";
  auto lock = LockMirror(mirror, LockMode::kShared);
  if (!lock) return tl::unexpected(failed + lock.error());
  auto repo = OpenMirror(mirror);
  if (!repo) return tl::unexpected(failed + repo.error());
  auto oid = Resolve(repo->get(), commit, "mirror " + mirror.string());
  if (!oid) return tl::unexpected(failed + oid.error());
  git_commit* raw_commit = nullptr;
  git_tree* raw_tree = nullptr;
  if (git_commit_lookup(&raw_commit, repo->get(), &*oid) != 0) {
    return tl::unexpected(failed + GitMessage(""));
  }
  int rc = git_commit_tree(&raw_tree, raw_commit);
  git_commit_free(raw_commit);
  if (rc != 0) return tl::unexpected(failed + GitMessage(""));
  Tree tree(raw_tree);
  if (fs::path sub = subdir.lexically_normal(); !sub.empty() && sub != "." && sub != "./") {
    std::string name = sub.string();
    while (name.ends_with('/')) name.pop_back();
    git_tree_entry* raw_entry = nullptr;
    if (git_tree_entry_bypath(&raw_entry, tree.get(), name.c_str()) != 0) {
      git_error_clear();
      return tl::unexpected(failed + "there is no '" + name + "' in it");
    }
    TreeEntry entry(raw_entry);
    if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE) {
      return tl::unexpected(failed + "'" + name + "' in it is not a folder");
    }
    git_tree* raw_subtree = nullptr;
    if (git_tree_lookup(&raw_subtree, repo->get(), git_tree_entry_id(entry.get())) != 0) {
      return tl::unexpected(failed + GitMessage(""));
    }
    tree = Tree(raw_subtree);
  }

  fs::path target = dest_dir.lexically_normal();
  if (!target.has_filename()) target = target.parent_path();
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec) return tl::unexpected(failed + ec.message());
  std::string pattern =
      (target.parent_path() / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return tl::unexpected(failed + "cannot create a temporary folder: " + std::strerror(errno));
  }
  const fs::path temporary = pattern;
  ExportState state{.repo = repo->get(), .root = temporary, .error = {}};
  bool written = git_tree_walk(tree.get(), GIT_TREEWALK_PRE, ExportEntry, &state) == 0;
  if (!written && state.error.empty()) state.error = GitMessage("");
  if (written && ::chmod(temporary.c_str(), 0755) != 0) {  // mkdtemp made it 0700
    written = false;
    state.error = "cannot chmod " + temporary.string() + ": " + std::strerror(errno);
  }
  if (written && fs::exists(target, ec)) {
    // Swap the two in one step, then remove the old tree (now at the temporary name).
    written =
        ::renameat2(AT_FDCWD, temporary.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0;
    if (!written) state.error = "cannot replace it: " + std::string(std::strerror(errno));
  } else if (written) {
    written = ::rename(temporary.c_str(), target.c_str()) == 0;
    if (!written) state.error = "cannot rename: " + std::string(std::strerror(errno));
  }
  fs::remove_all(temporary, ec);
  if (!written) return tl::unexpected(failed + state.error);
  return {};
}

}  // namespace gearrun::runner
