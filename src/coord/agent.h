// 'cryo agent': the per-node service of multi-node jobs (proto/coord.proto).
// It listens on a TCP address, takes one coordinator at a time, and runs
// the parts of that coordinator's job that live on its node
// (coord/part.h).  When the coordinator goes away, its parts are ended.
#pragma once

#include <string>

#include "store/staging.h"

namespace cryo::coord {

struct AgentOptions {
  std::string listen = "127.0.0.1:0";  // IP:PORT, port 0 = any free one
  std::string node;                    // its name for the node (default: the host name)
  std::string announce;                // write "NODE ADDRESS" here once listening
  std::string criu_path;
  store::FastTier tier;
  bool once = false;                   // exit after one coordinator
};

// Runs until killed (or after one coordinator, with once); returns an exit status.
int run_agent(const AgentOptions& o);

}  // namespace cryo::coord
