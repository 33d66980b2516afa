// Optimal rectangular assignment with a cost limit (the `lap.lapjv(cost, extend_cost=True,
// cost_limit=limit)` contract that ByteTrack uses).
//
// Among all partial matchings of rows to columns, returns one that minimizes
//   sum of cost(i, j) over matched pairs  +  limit / 2 for every unmatched row and column,
// so a pair is matched only when that is cheaper than leaving both sides alone; no matched pair
// costs more than `limit`. Rows and columns are first split into independent groups (connected
// by costs below the limit: pairs at or above it are never needed); each group is solved exactly
// by shortest augmenting paths with dual potentials (the Hungarian method in its Jonker-Volgenant
// form), O(k^3) for a group of k rows + columns. A pair whose row and column have no other pair
// below the limit (the usual case for a tracker: one track, one detection) is matched directly.
#pragma once

#include <cstddef>
#include <vector>

namespace smartcity {

struct Assignment {
  std::vector<int> row_to_col;  // -1: unmatched
  std::vector<int> col_to_row;  // -1: unmatched
};

// `cost` is row-major rows x cols. Throws std::invalid_argument on a size mismatch, a negative
// size, or a cost or limit that is not finite.
Assignment SolveAssignment(const std::vector<double>& cost, int rows, int cols, double limit);

// One candidate pair of the sparse form; pairs not listed cost the limit or more (never matched).
struct AssignmentEdge {
  int row;
  int col;
  double cost;
};

// The same problem given as the pairs that cost less than `limit` (the tracker's form: most
// boxes do not overlap). Throws std::invalid_argument for a negative size, an index out of range,
// a repeated pair inside a group that needs the full solver, or a cost or limit that is not finite.
Assignment SolveAssignmentSparse(const std::vector<AssignmentEdge>& edges, int rows, int cols, double limit);

// Scratch buffers of the sparse solver, kept between calls by a caller that solves every frame
// (the tracker) so that a solve allocates nothing once they have grown. Not thread-safe: one per
// caller.
struct AssignmentWorkspace {
  std::vector<int> degree, parent, local, group_of, group_of_root, touched, rest;
  std::vector<int> nrows, ncols, node_start, members, edge_start, group_edges, fill;
  std::vector<double> square, u, v, minv;
  std::vector<int> p, way, r2c;
  std::vector<char> used, seen;
};

// As above, writing into `out` (resized to rows / cols) and using `ws` for scratch.
void SolveAssignmentSparse(const AssignmentEdge* edges, size_t count, int rows, int cols, double limit,
                           AssignmentWorkspace& ws, Assignment& out);

}  // namespace smartcity
