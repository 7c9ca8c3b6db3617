// Package groups is group membership: which PCs are in which groups, as
// operators set it per PC (KV agent_groups, {"groups":[…]}) and as group
// definitions derive it (static member lists and read-only SQL queries over
// the projection, materialized into agent_groups_derived), the groups
// overview, and the Roster every exec and schedule resolves its target
// through.
//
// Agents read both buckets and subscribe to commands.group.{g} for the
// union, so the values here are byte-compatible with upstream's.
package groups

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// Normalize sorts and deduplicates a group list, and nothing else: upstream
// neither trims nor drops empty names on a PUT. nil becomes [].
func Normalize(groups []string) []string {
	out := slices.Clone(groups)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Encode is the stored form of a group list: {"groups":[…]} with no HTML
// escaping.
func Encode(groups []string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(wire.AgentGroups{Groups: Normalize(groups)})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// Membership edits the manual membership of PCs in KV agent_groups.
type Membership struct {
	KV jetstream.KeyValue // nil: the bucket is missing (503)
}

func (m Membership) bucket() error {
	if m.KV == nil {
		return api.Unavailable("agent_groups KV bucket unavailable: bucket not found")
	}
	return nil
}

// Get is a PC's manual groups; a missing key is no groups.
func (m Membership) Get(ctx context.Context, pc string) (wire.AgentGroups, error) {
	if err := m.bucket(); err != nil {
		return wire.AgentGroups{}, err
	}
	g, _, err := m.read(ctx, pc)
	return g, err
}

// read returns the value and its revision (0: no live entry).
func (m Membership) read(ctx context.Context, pc string) (wire.AgentGroups, uint64, error) {
	e, err := m.KV.Get(ctx, pc)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return wire.AgentGroups{Groups: []string{}}, 0, nil
	}
	if err != nil {
		return wire.AgentGroups{}, 0, internal("read agent_groups for %s: %v", pc, err)
	}
	g, err := wire.DecodeAgentGroups(e.Value())
	if err != nil {
		return wire.AgentGroups{}, 0, internal("decode agent_groups for %s: %v", pc, err)
	}
	g.Groups = Normalize(g.Groups)
	return g, e.Revision(), nil
}

// Put replaces a PC's groups (a blind put) and returns the stored value.
func (m Membership) Put(ctx context.Context, pc string, groups []string) (wire.AgentGroups, error) {
	if err := m.bucket(); err != nil {
		return wire.AgentGroups{}, err
	}
	if err := validPC(pc); err != nil {
		return wire.AgentGroups{}, err
	}
	v := wire.AgentGroups{Groups: Normalize(groups)}
	if _, err := m.KV.Put(ctx, pc, Encode(v.Groups)); err != nil {
		return wire.AgentGroups{}, internal("write agent_groups for %s: %v", pc, err)
	}
	return v, nil
}

// Add puts a PC in a group (compare-and-set; no write when already in).
// The name is stored as given, untrimmed, as upstream does.
func (m Membership) Add(ctx context.Context, pc, group string) (wire.AgentGroups, error) {
	if strings.TrimSpace(group) == "" {
		return wire.AgentGroups{}, api.BadRequest("group name must not be empty")
	}
	return m.modify(ctx, pc, "add group", func(gs []string) ([]string, bool) {
		if slices.Contains(gs, group) {
			return gs, false
		}
		return Normalize(append(gs, group)), true
	})
}

// Remove takes a PC out of a group (compare-and-set; no write when not in).
func (m Membership) Remove(ctx context.Context, pc, group string) (wire.AgentGroups, error) {
	return m.modify(ctx, pc, "remove group", func(gs []string) ([]string, bool) {
		i := slices.Index(gs, group)
		if i < 0 {
			return gs, false
		}
		return slices.Delete(slices.Clone(gs), i, i+1), true
	})
}

// modify is upstream's read-modify-write: up to 32 attempts, a linear
// backoff of 2 ms per attempt capped at 25 ms.
func (m Membership) modify(ctx context.Context, pc, what string, change func([]string) ([]string, bool)) (wire.AgentGroups, error) {
	if err := m.bucket(); err != nil {
		return wire.AgentGroups{}, err
	}
	if err := validPC(pc); err != nil {
		return wire.AgentGroups{}, err
	}
	var last error
	for attempt := 1; attempt <= 32; attempt++ {
		cur, rev, err := m.read(ctx, pc)
		if err != nil {
			return wire.AgentGroups{}, err
		}
		next, changed := change(cur.Groups)
		if !changed {
			return cur, nil
		}
		if rev == 0 {
			_, err = m.KV.Create(ctx, pc, Encode(next))
		} else {
			_, err = m.KV.Update(ctx, pc, Encode(next), rev)
		}
		if err == nil {
			return wire.AgentGroups{Groups: next}, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return wire.AgentGroups{}, internal("%s for %s: %v", what, pc, ctx.Err())
		case <-time.After(min(time.Duration(attempt)*2*time.Millisecond, 25*time.Millisecond)):
		}
	}
	return wire.AgentGroups{}, internal("%s for %s: %v", what, pc, last)
}

// validPC refuses a pc_id that cannot be a KV key or subject token.
func validPC(pc string) error {
	if !wire.ValidToken(pc) {
		return api.BadRequest("invalid pc_id %q", pc)
	}
	return nil
}
