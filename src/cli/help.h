// How cryo prints its help: 'cryo --help' lists each verb by the first
// sentence of its description, so that it fits one screen; 'cryo VERB
// --help' shows the whole description, the verb's options and its own
// examples.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace cryo::cli {

// Adds a verb whose description is `summary` (one line, which 'cryo
// --help' lists) and then, in its own help, `details`.
CLI::App* add_verb(CLI::App& app, const std::string& name, const std::string& summary, const std::string& details = "");
// The first line of a verb's description.
std::string summary(const std::string& description);

class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_subcommand(const CLI::App* sub) const override;
};

}  // namespace cryo::cli
