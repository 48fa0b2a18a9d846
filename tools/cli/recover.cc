// `varve recover DIR [--dry-run] [--mode point-in-time|skip-damaged]`: the
// explicit repair of a log that recovery refused (the library's repair_log).
// It shows what it found and does, always on stderr as it happens, and ends
// with a report: events kept, records set aside, where the bytes went.
#include "tools/cli/common.h"

#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "varve/varve.h"

namespace varve::cli {
namespace {

using namespace std::chrono_literals;
using ojson = nlohmann::ordered_json;

struct recover_args {
  std::string dir;
  std::string mode = "point-in-time";
  bool dry_run = false;
  bool json = false;
};

const char* kind_name(recovery_action::kind k) {
  switch (k) {
    case recovery_action::kind::cut: return "cut";
    case recovery_action::kind::set_aside: return "set_aside";
    case recovery_action::kind::removed_empty: return "removed_empty";
    case recovery_action::kind::hole: return "hole";
    case recovery_action::kind::rebuilt: return "rebuilt";
    case recovery_action::kind::note: return "note";
  }
  return "note";
}

int cmd_recover(const recover_args& a) {
  if (auto rc = check_dir(a.dir)) return *rc;
  repair_options o;
  if (a.mode == "point-in-time") o.mode = recovery_mode::point_in_time;
  else if (a.mode == "skip-damaged") o.mode = recovery_mode::skip_damaged;
  else return usage_error("--mode: \"" + a.mode + "\" is not point-in-time or skip-damaged");
  o.dry_run = a.dry_run;
  o.observer = recovery_printer();  // every action on stderr as it happens
  progress_line progress(500ms, 200ms);
  o.progress = [&progress](uint64_t done, uint64_t total) {
    if (!progress.due()) return;
    progress.show("checking sealed segments: " + human_bytes(done) + " of " + human_bytes(total));
  };
  auto rep = repair_log(a.dir, o);
  progress.clear();
  if (!rep) return fail_open(rep.error(), a.dir);
  const repair_report& r = rep.value();
  if (a.json) {
    ojson j;
    j["dir"] = a.dir;
    j["mode"] = a.mode;
    j["dry_run"] = a.dry_run;
    j["damaged"] = r.damaged;
    j["acknowledged_end_before"] = r.end_before.value;
    j["events_before_damage"] = r.events_before;
    if (!a.dry_run) {
      j["end_after"] = r.end_after.value;
      j["events_after"] = r.events_after;
      j["lost_events"] = r.lost_events;
    }
    j["records_set_aside"] = r.records_set_aside;
    ojson actions = ojson::array();
    for (const recovery_action& x : r.actions) {
      ojson e;
      e["action"] = kind_name(x.what);
      e["file"] = x.file;
      e["offset"] = x.offset;
      e["bytes"] = x.bytes;
      e["why"] = x.why;
      if (!x.kept_at.empty()) e["kept_at"] = x.kept_at;
      if (x.events) e["records"] = x.events;
      actions.push_back(e);
    }
    j["actions"] = actions;
    std::printf("%s\n", j.dump(-1, ' ', false, ojson::error_handler_t::replace).c_str());
    return kExitOk;
  }
  if (!r.damaged) {
    std::printf("%s: nothing to repair (%s)\n", a.dir.c_str(), a.dry_run ? "dry run" : "checked");
    return kExitOk;
  }
  if (a.dry_run) {
    std::printf("%s: dry run, nothing changed. %zu finding(s) above; `varve recover %s --mode %s` "
                "would repair them, keeping every byte it takes out in %s/lost+found/\n",
                a.dir.c_str(), r.actions.size(), a.dir.c_str(), a.mode.c_str(), a.dir.c_str());
    return kExitOk;
  }
  std::printf("%s: repaired (%s): %llu events in the log now; %llu records set aside and %llu "
              "events lost in holes, every byte kept in %s/lost+found/ (REPORT there lists each action)\n",
              a.dir.c_str(), a.mode.c_str(), static_cast<unsigned long long>(r.events_after),
              static_cast<unsigned long long>(r.records_set_aside),
              static_cast<unsigned long long>(r.lost_events), a.dir.c_str());
  return kExitOk;
}

}  // namespace

void add_recover(CLI::App& app, command_list& out) {
  auto a = std::make_shared<recover_args>();
  CLI::App* sub = app.add_subcommand(
      "recover",
      "repair a log that recovery refused: show what is damaged, then end the log before it "
      "(point-in-time) or replace damaged ranges by holes (skip-damaged); every byte taken out is "
      "kept in DIR/lost+found/ first");
  sub->add_option("DIR", a->dir, "log directory")->required();
  sub->add_option("--mode", a->mode,
                  "point-in-time: the log ends just before the first damage, the rest is kept aside; "
                  "skip-damaged: damaged batches become holes, the valid events after them stay")
      ->type_name("point-in-time|skip-damaged");
  sub->add_flag("--dry-run", a->dry_run, "say what would be done; change nothing");
  add_json_flag(*sub, a->json, "the report as one JSON object");
  out.push_back({sub, [a] { return cmd_recover(*a); }});
}

}  // namespace varve::cli
