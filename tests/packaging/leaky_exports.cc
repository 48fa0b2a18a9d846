// A deliberately leaky shared library for the exported_symbols_catches_*
// tests: built with default visibility, it exports a varve::detail function
// and an engine-style class that no public header declares, which
// tests/check_exports.cmake must refuse (proving the check can fail).
namespace varve {
namespace detail {
int leaked_detail_helper(int x) { return x + 1; }
}  // namespace detail

struct leaked_segment_table {
  int lookup(int x) const;
};
int leaked_segment_table::lookup(int x) const { return x * 2; }
}  // namespace varve
