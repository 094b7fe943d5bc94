#include "store/signing.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdlib>
#include <fmt/format.h>

#include "base/hash.h"
#include "base/identity.h"
#include "base/sys.h"

namespace cryo::store {

namespace {

constexpr size_t kKeyBytes = 32;

std::string copy_hint(const std::string& path) {
  return "every node that restores this site's checkpoints needs the same key: copy " + path +
         " (mode 0600) from the node that wrote them, as munge's key is copied, or set CRYO_KEY";
}

// Makes a new key at path unless another process makes one first: written
// under a temporary name, then linked, so no one reads half a key.
Status create_key(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) CRYO_TRY(sys::mkdir_p(dir, 0755));
  std::string key(kKeyBytes, '\0');
  if (::getrandom(key.data(), key.size(), 0) != static_cast<ssize_t>(key.size()))
    return sys_error("cannot get random bytes for a signing key");
  std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  auto fd = sys::open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!fd) return fd.error().with_hint("cryo signs its checkpoints with a key kept there; set CRYO_KEY elsewhere");
  Status st = sys::write_all(fd->get(), key, "'" + tmp + "'");
  if (st) st = sys::fsync_fd(fd->get(), "'" + tmp + "'");
  if (st && ::link(tmp.c_str(), path.c_str()) < 0 && errno != EEXIST) st = sys_error("cannot create '" + path + "'");
  ::unlink(tmp.c_str());
  if (st && !dir.empty()) st = sys::fsync_path(dir);
  return st;
}

}  // namespace

std::string key_path() { return tuning().key_path; }

Result<SigningKey> SigningKey::load(const std::string& path, bool create) {
  AsRoot root;  // the node's key, even in a cryo acting for a user
  if (create && !sys::exists(path)) CRYO_TRY(create_key(path));
  auto fd = sys::open(path, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (!sys::exists(path))
      return make_error("this node has no key to check checkpoints with: " + path + " does not exist")
          .with_hint(copy_hint(path));
    // Readable by root only, as it must be: cryo signs and checks as root.
    if (fd.error().code == EACCES && ::geteuid() != 0)
      return fd.error().with_hint("only root may read the key, and cryo runs as root: run cryo as root, for example "
                                  "with sudo");
    return fd.error().with_hint(copy_hint(path));
  }
  auto st = sys::fstat(fd->get(), "'" + path + "'");
  if (!st) return st.error();
  if (!S_ISREG(st->st_mode)) return make_error("cryo's signing key " + path + " is not a regular file");
  if (st->st_mode & 077)
    return make_error(fmt::format("cryo's signing key {} can be read by other users (mode {:04o})", path,
                                  st->st_mode & 07777))
        .with_hint("whoever reads it can forge checkpoints: 'chmod 600 " + path + "', and make a new key if it may have leaked");
  auto bytes = sys::read_all(fd->get(), "'" + path + "'");
  if (!bytes) return bytes.error();
  if (bytes->size() < kKeyBytes)
    return make_error(fmt::format("cryo's signing key {} is {} bytes; a key is {}", path, bytes->size(), kKeyBytes))
        .with_hint(copy_hint(path));
  SigningKey k;
  k.key_ = std::move(*bytes);
  k.id_ = sha256_bytes(k.key_.data(), k.key_.size()).substr(0, 16);
  k.path_ = path;
  return k;
}

std::string SigningKey::mac(std::string_view text) const { return hmac_sha256(key_, text); }

Status SigningKey::same_key(const std::string& other_id, const std::string& who) const {
  if (other_id == id_) return {};
  return make_error(who + " holds key " + (other_id.empty() ? "(none)" : other_id) + ", and this node's key (" + path_ +
                    ") is " + id_)
      .with_hint(copy_hint(path_));
}

void SigningKey::sign(nlohmann::json& manifest) const {
  manifest.erase("signature");
  manifest["signature"] = {{"key", id_}, {"hmac_sha256", hmac_sha256(key_, manifest.dump())}};
}

Status SigningKey::check(const nlohmann::json& manifest, const std::string& what, const std::string& hint) const {
  auto sig = manifest.find("signature");
  if (sig == manifest.end() || !sig->is_object() || !sig->contains("key") || !sig->contains("hmac_sha256") ||
      !(*sig)["key"].is_string() || !(*sig)["hmac_sha256"].is_string())
    return make_error(what + " is not signed, so it cannot be told from a forgery")
        .with_hint("cryo signs everything it writes there; this was written by an older cryo or by something else: " +
                   hint);
  std::string key = (*sig)["key"];
  if (key != id_)
    return make_error(what + " was signed with key " + key + ", and this node's key (" + path_ + ") is " + id_)
        .with_hint(copy_hint(path_));
  nlohmann::json body = manifest;
  body.erase("signature");
  if (!equal_in_constant_time(hmac_sha256(key_, body.dump()), (*sig)["hmac_sha256"].get<std::string>()))
    return make_error(ErrorKind::corrupt,
                      what + " has been changed since cryo wrote it: its signature does not match (forged or damaged)")
        .with_hint(hint);
  return {};
}

Status check_signed(const nlohmann::json& doc, const std::string& what, const std::string& hint) {
  auto key = SigningKey::load(key_path(), false);
  if (!key) return key.error();
  return key->check(doc, what, hint);
}

Result<std::string> signed_manifest_text(const Manifest& m) {
  auto key = SigningKey::load(key_path(), true);
  if (!key) return key.error();
  nlohmann::json j = to_json(m);
  key->sign(j);
  return j.dump(1) + "\n";
}

Result<Manifest> load_signed_manifest(const JobDir& job, const std::string& id) {
  auto text = job.manifest_text(id);
  if (!text) return text.error();
  std::string path = job.checkpoint_dir(id) + "/manifest.json";
  // Parsed once, for its contents and its signature.
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  auto m = manifest_from_json(j, path);
  if (!m) return m.error();
  CRYO_TRY(check_signed(j, "checkpoint " + id + " of job '" + job.name() + "' (" + path + ")",
                        "restore an older checkpoint with --from, or take a new one"));
  return m;
}

}  // namespace cryo::store
