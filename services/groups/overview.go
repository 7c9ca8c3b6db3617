package groups

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Group is one row of the groups overview.
type Group struct {
	Name      string   `json:"name"`
	Members   []string `json:"members"`
	HasConfig bool     `json:"has_config"`
	Emails    []string `json:"emails"`
}

// Overview is GET /api/groups.
type Overview struct {
	Groups []Group `json:"groups"`
}

// BucketGroupContacts holds a group's contact addresses, {"emails":[…]}.
const BucketGroupContacts = "group_contacts"

// List builds the overview as upstream: the names are the union of the
// effective membership, the groups.{name} keys of agent_config and the
// keys of group_contacts; members sorted, rows by name. Every source is
// best effort: a missing bucket (nil) contributes nothing.
func List(ctx context.Context, r *Roster, config, contacts jetstream.KeyValue) Overview {
	members := r.Membership()
	names := map[string]bool{}
	for g := range members {
		names[g] = true
	}
	configured := map[string]bool{}
	for _, k := range keys(ctx, config) {
		if g, ok := strings.CutPrefix(k, "groups."); ok {
			configured[g] = true
			names[g] = true
		}
	}
	emails := map[string][]string{}
	if contacts != nil {
		for _, k := range keys(ctx, contacts) {
			names[k] = true
			e, err := contacts.Get(ctx, k)
			if err != nil {
				continue
			}
			var v struct {
				Emails []string `json:"emails"`
			}
			if json.Unmarshal(e.Value(), &v) == nil {
				emails[k] = v.Emails
			}
		}
	}
	out := Overview{Groups: []Group{}}
	for _, g := range slices.Sorted(maps.Keys(names)) {
		row := Group{Name: g, Members: members[g], HasConfig: configured[g], Emails: emails[g]}
		if row.Members == nil {
			row.Members = []string{}
		}
		if row.Emails == nil {
			row.Emails = []string{}
		}
		out.Groups = append(out.Groups, row)
	}
	return out
}

// keys lists a bucket's keys; none on any error.
func keys(ctx context.Context, kv jetstream.KeyValue) []string {
	if kv == nil {
		return nil
	}
	l, err := kv.ListKeys(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out
}
