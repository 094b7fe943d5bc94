// A job as 'cryo ls' and 'cryo status' show it, as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include "store/staging.h"
#include "store/store.h"

namespace cryo::cli {

// detailed: include live status from the supervisor and each checkpoint's details.
nlohmann::json describe_job(const store::JobDir& dir, const store::FastTier& tier, bool detailed);

}  // namespace cryo::cli
