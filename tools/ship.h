// `varve ship`: follow a log (catch up, then live) and produce every committed
// event to a Kafka topic, exactly once across restarts (tools/ship.cc).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace varve::tools {

struct ship_args {
  std::string dir;
  std::string brokers;
  std::string topic;
  bool from_beginning = false;
  bool json = false;
  bool stop_at_end = false;
  unsigned connect_timeout_s = 30;
  unsigned max_transaction_events = 10000;
};

// Registers the subcommand on `app`, filling `a`; dispatch with cmd_ship(a).
CLI::App* add_ship_command(CLI::App& app, ship_args& a);
int cmd_ship(const ship_args& a);

}  // namespace varve::tools
