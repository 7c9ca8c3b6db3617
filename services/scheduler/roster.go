package scheduler

import (
	"context"
	"fmt"
	"slices"

	"github.com/kanade-go/kanade/store"
)

// Expected is upstream's dispatch set of a reconcile schedule: the alive
// agents (heartbeat within AliveWindow) the target covers by all or by
// group, and its pcs verbatim (alive or not); unioned, sorted.
func (a *AgentCounter) Expected(ctx context.Context, t Target) []string {
	if a != nil && a.Roster != nil {
		return a.Roster.Resolve(ctx, t.All, t.Groups, t.PCs, true)
	}
	var pool []string
	if t.All || len(t.Groups) > 0 {
		pool = a.aliveAgents(ctx)
	}
	return a.resolve(t, pool)
}

// FullRoster is the target's whole membership, offline agents included:
// what coverage counts and per_target's dedup looks at (upstream's
// resolve_roster with alive_only false: all means every agent known).
func (a *AgentCounter) FullRoster(ctx context.Context, t Target) ([]string, error) {
	if a != nil && a.Roster != nil {
		members := a.Roster.Resolve(ctx, false, t.Groups, t.PCs, false)
		if !t.All {
			return members, nil
		}
		everyone, err := allAgents(ctx, a.Roster.DB)
		if err != nil {
			return nil, err
		}
		return mergeSorted(everyone, members), nil
	}
	var pool []string
	if (t.All || len(t.Groups) > 0) && a != nil && a.DB != nil {
		var err error
		if pool, err = allAgents(ctx, a.DB); err != nil {
			return nil, err
		}
	}
	return a.resolve(t, pool), nil
}

// allAgents is every agent of the projection, sorted.
func allAgents(ctx context.Context, db *store.DB) ([]string, error) {
	var pool []string
	if db != nil {
		rows, err := db.R.QueryContext(ctx, `SELECT pc_id FROM agents ORDER BY pc_id`)
		if err != nil {
			return nil, fmt.Errorf("roster: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var pc string
			if err := rows.Scan(&pc); err != nil {
				return nil, fmt.Errorf("roster: %w", err)
			}
			pool = append(pool, pc)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("roster: %w", err)
		}
	}
	return pool, nil
}

// mergeSorted is the sorted union of two sorted lists.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// resolve picks the members of t out of pool, adds t's pcs, and sorts.
// pool is sorted and without repeats; for a plain all the result is pool
// itself, shared: callers do not change it.
func (a *AgentCounter) resolve(t Target, pool []string) []string {
	if t.All && len(t.PCs) == 0 {
		return pool
	}
	seen := make(map[string]bool, len(t.PCs))
	var out []string
	add := func(pc string) {
		if !seen[pc] {
			seen[pc] = true
			out = append(out, pc)
		}
	}
	for _, pc := range t.PCs {
		add(pc)
	}
	switch {
	case t.All:
		for _, pc := range pool {
			add(pc)
		}
	case len(t.Groups) > 0 && a != nil:
		for _, pc := range pool {
			if seen[pc] {
				continue
			}
			groups, _ := a.Groups.Get(pc)
			for _, g := range groups {
				if slices.Contains(t.Groups, g) {
					add(pc)
					break
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
