// Signed checkpoints: a restore refuses a checkpoint whose manifest this
// site's cryo did not write.
//
// Each node holds the site's key: 32 random bytes in a file that only its
// owner (root) may read, $CRYO_KEY or /etc/cryo/key.  cryo makes one at the
// first checkpoint if there is none.  Nodes that restore each other's
// checkpoints need the same key: copy it to them as munge's key is copied.
//
// A manifest carries
//
//   "signature": {"key": KEY_ID, "hmac_sha256": HEX}
//
// the HMAC-SHA256, under the key, of the manifest's compact JSON without
// "signature"; KEY_ID is the start of the key's SHA-256, to tell keys
// apart in errors.  The manifest names every chunk by the SHA-256 of its
// content and holds the job state a restore acts on (the files it puts
// back, the pipes it replaces), so a sound signature fixes every byte
// that a restore reads from the store.  Someone who can write the store
// but not read the key can damage a checkpoint, never forge one.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "store/manifest.h"
#include "store/store.h"

namespace cryo::store {

// The site's key: tuning().key_path ($CRYO_KEY, else /etc/cryo/key).
std::string key_path();

class SigningKey {
 public:
  // Reads the key at path; with create, makes it first if there is none.
  // Refuses a key that users other than its owner can read.
  static Result<SigningKey> load(const std::string& path, bool create);

  const std::string& id() const { return id_; }
  const std::string& path() const { return path_; }
  // The hex HMAC-SHA256 of text under the key: for keys derived from it
  // (coord/wire.h), without the key itself leaving this class.
  std::string mac(std::string_view text) const;
  // An error unless other_id, the id of the key that `who` holds, is this
  // key's: nodes that work together need the same key.
  Status same_key(const std::string& other_id, const std::string& who) const;
  // Adds "signature" to a manifest's JSON.
  void sign(nlohmann::json& manifest) const;
  // Checks the "signature" of a manifest's JSON; `what` names it in
  // errors, and `hint` says what to do if it is not sound.
  Status check(const nlohmann::json& manifest, const std::string& what, const std::string& hint) const;

 private:
  std::string key_, id_, path_;
};

// Checks the signature of a JSON document (a manifest, job.json) with this
// node's key, as SigningKey::check does.
Status check_signed(const nlohmann::json& doc, const std::string& what, const std::string& hint);

// The manifest's JSON, signed with this node's key (made if need be).
Result<std::string> signed_manifest_text(const Manifest& m);

// Loads checkpoint id's manifest and checks its signature with this node's
// key: what a restore or a verify reads first.
Result<Manifest> load_signed_manifest(const JobDir& job, const std::string& id);

}  // namespace cryo::store
