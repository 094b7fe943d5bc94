#include "cli/help.h"

#include <sstream>

namespace cryo::cli {

CLI::App* add_verb(CLI::App& app, const std::string& name, const std::string& summary, const std::string& details) {
  return app.add_subcommand(name, details.empty() ? summary : summary + "\n\n" + details);
}

std::string summary(const std::string& description) { return description.substr(0, description.find('\n')); }

std::string HelpFormatter::make_subcommand(const CLI::App* sub) const {
  std::stringstream out;
  CLI::detail::format_help(out, sub->get_display_name(true), summary(sub->get_description()), get_column_width());
  return out.str();
}

}  // namespace cryo::cli
