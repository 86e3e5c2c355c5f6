// Git through libgit2, in process (the `git` program is never run): a bare mirror per remote
// URL in a cache folder, working trees of one commit made from that mirror, and exports of a
// commit's files into a plain folder (job definitions).
//
//   GitCheckoutRequest request{.url = "https://example.org/guava.git", .ref = "main",
//                              .dest = workspace.path() / "src"};
//   auto checkout = CheckoutFromMirror(state_dir / "git", request);
//   if (!checkout) return Fail(checkout.error());  // one line, credentials removed
//   Log(checkout->commit);                          // 40 hex digits
//
// On disk, per URL (credentials left out of the name): <cache_root>/<name>-<hash>, a bare
// repository holding every ref of the remote (refs/*: branches, tags, refs/changes/...,
// refs/zuul/...), pruned on each fetch so that it mirrors the remote, and next to it
// <name>-<hash>.lock. A fetch into a mirror holds an exclusive flock on the lock file; reading a
// mirror (resolving, checking out, exporting) a shared one. So builds of the same URL in any
// number of threads and processes are safe, and at most one of them fetches at a time (the
// others then fetch only what is still new, usually nothing).
//
// Credentials in a URL (https://user:token@host/...) are used for fetching and never written
// to disk (mirror and working trees name the remote `origin` with RedactUrl's URL), logged or
// returned: every error names the URL without them. ssh:// and user@host:path URLs
// authenticate with the ssh agent (SSH_AUTH_SOCK). The git configuration's
// url.<base>.insteadOf rewriting applies, as with git; proxies come from http.proxy and the
// usual environment variables.
//
// libgit2 1.5 limits what this can do:
// - No shallow fetch: git_fetch_options has no depth before libgit2 1.7, so
//   GitCheckoutRequest::depth is accepted and ignored; mirrors and working trees always get the
//   full history.
// - No network timeout (GIT_OPT_SET_SERVER_TIMEOUT is 1.7 too): a remote that accepts the
//   connection and then stops answering blocks the call, and every caller waiting for the
//   same mirror's lock. The caller bounds the build, not this code.
// - Over file:// (libgit2's local transport), a fetch that finds anything new also sends
//   every annotated tag again, with its commit's whole tree; git://, https:// and ssh:// send
//   only what is new.
// - Nothing is ever garbage-collected: objects of pruned refs stay in the mirror.
//
// Ownership: the caller owns cache_root, dest and dest_dir; nothing here keeps state between
// calls. Thread safety: every function may run on any number of threads at once, on the same
// or different URLs, except that two calls must not make the same `dest` at the same time (a
// Workspace's lock sees to that).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <vector>

namespace gearrun::runner {

// Keeps libgit2 initialized while it lives (git_libgit2_init / git_libgit2_shutdown, which
// libgit2 counts and guards). Every function below holds one for its duration, so a caller
// needs none; one held in main saves setting libgit2 up and tearing it down on every call.
class GitLibrary {
 public:
  GitLibrary();  // aborts if libgit2 cannot initialize (out of memory)
  ~GitLibrary();
  GitLibrary(const GitLibrary&) = delete;
  GitLibrary& operator=(const GitLibrary&) = delete;
};

struct GitCheckoutRequest {
  // Whatever libgit2 fetches from: https://, ssh://, user@host:path, git://, file://, a path.
  std::string url;
  // What to check out, tried in this order:
  //   a full 40-hex commit id, used as is (no fetch at all when the mirror already has it);
  //   a branch (refs/heads/REF), then a tag (refs/tags/REF, peeled to its commit);
  //   a full ref name (refs/changes/01/1/1, refs/zuul/master/Z123, HEAD);
  //   anything else git rev-parse understands (an abbreviated id, main~2).
  // Empty: the remote's default branch (what its HEAD points at).
  std::string ref;
  // The working tree to make, or to update when it is already a repository (a workspace
  // reused between builds): absent, an empty folder, or a non-bare repository.
  std::filesystem::path dest;
  // Ignored: libgit2 1.5 cannot fetch shallow (see above).
  int depth = 0;
  // Also check out every submodule at the commit the superproject records, recursively, each
  // through a mirror of its own (relative submodule URLs are resolved against `url`). A
  // submodule is a repository of its own in its path (its .git a folder, not a link into the
  // superproject's .git/modules); `git submodule status` sees it initialized and up to date.
  bool submodules = false;
  // Values that must never be written or shown (secret build parameters that a URL or ref
  // may hold): masked in every message, in the URLs written to the mirror's and dest's
  // configuration, and in the mirror's name (MirrorPathFor).
  std::vector<std::string> secrets;
};

struct GitFetchResult {
  std::filesystem::path mirror;      // the mirror's folder
  std::size_t received_objects = 0;  // objects fetched by this call; 0: nothing new
  std::size_t received_bytes = 0;
};

struct GitCheckoutResult {
  std::string commit;                // 40 hex digits, now checked out (detached HEAD) in dest
  std::filesystem::path mirror;      // the mirror's folder
  std::size_t received_objects = 0;  // objects the mirror fetched for this checkout (not
                                     // counting submodules); 0: nothing new, or no fetch needed
};

// Where the mirror of `url` lives under `cache_root`: <cache_root>/<name>-<hash>, with <name>
// the last part of the URL's path with `secrets` masked (letters, digits, '.', '_', '-') and
// <hash> 16 hex digits of a hash of the URL without credentials: FNV-1a, or, when a secret is
// part of the URL, SHA-1 keyed with the cache's random <cache_root>/.mirror-key (made on
// first use), so that the name tells nothing about the secret.
[[nodiscard]] std::filesystem::path MirrorPathFor(const std::filesystem::path& cache_root,
                                                  std::string_view url,
                                                  const std::vector<std::string>& secrets = {});

// Brings the mirror of `url` up to date with the remote, creating it (and cache_root) if
// needed: fetches what is new on every ref, and drops the refs the remote no longer has.
// Waits for another fetch of the same mirror to finish first. Errors name the URL (without
// credentials) and carry libgit2's message: unreachable remote, authentication, I/O.
[[nodiscard]] tl::expected<GitFetchResult, std::string> FetchMirror(
    const std::filesystem::path& cache_root, std::string_view url,
    const std::vector<std::string>& secrets = {});

// The commit `ref` names in `mirror` (as GitCheckoutRequest::ref explains), as 40 hex
// digits. Reads only the mirror: no network. Errors: the mirror cannot be opened, or there is
// no such ref or commit ("ref 'x' not found in mirror /path").
[[nodiscard]] tl::expected<std::string, std::string> ResolveInMirror(
    const std::filesystem::path& mirror, std::string_view ref);

// Makes request.dest a working tree of the commit request.ref names at request.url, through
// the mirror of that URL under cache_root (FetchMirror, then ResolveInMirror, then a local
// copy: no network beyond the mirror's fetch). A new dest is a clone of the mirror (its object
// files hard-linked when on the same file system, copied otherwise); a dest that is already a
// repository fetches from the mirror. Either way the commit is force-checked out on a detached
// HEAD: tracked files are made to match the commit, untracked and ignored files are left alone
// (emptying the workspace first is the job's choice: `workspace: {clean: true}`). dest's `origin`
// is the URL without credentials, with its branches in refs/remotes/origin/* and the tags. Errors:
// everything FetchMirror's are, "commit <id> not found in <url>", "ref '<ref>' not found in <url>",
// dest not usable, and the same for a submodule (naming its path).
[[nodiscard]] tl::expected<GitCheckoutResult, std::string> CheckoutFromMirror(
    const std::filesystem::path& cache_root, const GitCheckoutRequest& request);

// Writes the files of `commit` (anything ResolveInMirror takes) in `mirror` into dest_dir, a
// plain folder without .git: regular files (executable bit kept), symbolic links, and an
// empty folder for each submodule. With `subdir` (a folder of the commit, relative), only
// what is in that folder; an error when the commit has no such folder. The tree is written to a
// temporary sibling folder and then swapped in with one rename, so a reader of dest_dir sees the
// old tree or the new one, never a mix; what dest_dir held before is removed. No network.
[[nodiscard]] tl::expected<void, std::string> ExportTree(const std::filesystem::path& mirror,
                                                         std::string_view commit,
                                                         const std::filesystem::path& dest_dir,
                                                         const std::filesystem::path& subdir = {});

// `url` without its credentials, for messages and for what is written to disk:
// "https://user:secret@host/x.git" -> "https://host/x.git" (the whole userinfo goes: a token
// is often the user name). An scp-like address (git@host:path) has no password and is kept.
[[nodiscard]] std::string RedactUrl(std::string_view url);

}  // namespace gearrun::runner
