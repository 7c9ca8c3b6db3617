package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// GroupList is a PC's groups as KV agent_groups holds them: upstream's
// {"groups":[…]}, or a bare list as this project's sim wrote earlier.
type GroupList []string

// UnmarshalJSON accepts both shapes.
func (g *GroupList) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*g = list
		return nil
	}
	var obj struct {
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("agent_groups value: want {\"groups\":[…]}: %w", err)
	}
	*g = obj.Groups
	return nil
}

// Expected is upstream's dispatch set of a reconcile schedule: the alive
// agents (heartbeat within AliveWindow) the target covers by all or by
// group, and its pcs verbatim (alive or not); unioned, sorted.
func (a *AgentCounter) Expected(ctx context.Context, t Target) []string {
	var pool []string
	if t.All || len(t.Groups) > 0 {
		pool = a.aliveAgents(ctx)
	}
	return a.resolve(t, pool)
}

// Roster is the target's whole membership, offline agents included: what
// coverage counts and per_target's dedup looks at.
func (a *AgentCounter) Roster(ctx context.Context, t Target) ([]string, error) {
	var pool []string
	if (t.All || len(t.Groups) > 0) && a != nil && a.DB != nil {
		rows, err := a.DB.R.QueryContext(ctx, `SELECT pc_id FROM agents ORDER BY pc_id`)
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
	return a.resolve(t, pool), nil
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
