#include "slurm_cluster.h"

#include <stdlib.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace cryo::test {

std::string SlurmCluster::script(const std::string& args) const {
  return "CRYO_SLURM_DIR=" + dir_ + " CRYO_SLURM_PORT=" + std::to_string(port_) + " " + CRYO_SOURCE_DIR +
         "/scripts/slurm-cluster.sh " + args + " 2>&1";
}

bool SlurmCluster::up(const std::string& dir, int port, int nodes, std::string* out) {
  dir_ = dir;
  port_ = port;
  int rc;
  *out = sh(script("up --nodes " + std::to_string(nodes)), &rc);
  started_ = true;
  ::setenv("SLURM_CONF", conf().c_str(), 1);
  return rc == 0;
}

void SlurmCluster::down(const std::vector<std::string>& jobs) {
  if (!started_) return;
  // The jobs first, while slurmd can still end their processes.
  for (const auto& id : jobs) sh("scancel " + id + " 2>/dev/null");
  for (int i = 0; i < 300 && !trim(sh("squeue -h -o %i 2>/dev/null")).empty(); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  sh(script("down"));
  ::unsetenv("SLURM_CONF");
  started_ = false;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string slurm_state(const std::string& id) { return trim(sh("squeue -h -j " + id + " -o %T 2>/dev/null")); }

std::string sbatch(const CryoFn& cryo, const std::vector<std::string>& args, std::vector<std::string>& submitted) {
  std::vector<std::string> all = {"sbatch", "--json"};
  all.insert(all.end(), args.begin(), args.end());
  std::string out, err;
  EXPECT_EQ(cryo(all, &out, &err), 0) << err;
  auto j = nlohmann::json::parse(out, nullptr, false);
  std::string id = j.is_object() ? j.value("slurm_job_id", "") : "";
  EXPECT_FALSE(id.empty()) << out << err;
  submitted.push_back(id);
  return id;
}

bool wait_slurm_gone(const std::string& id, double timeout) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (std::chrono::steady_clock::now() < end) {
    if (slurm_state(id).empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}

}  // namespace cryo::test
