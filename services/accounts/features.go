package accounts

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/kanade-go/kanade/services/api"
)

// Features are upstream's page feature keys, in catalog order. An account
// restricted to some of them may only use their routes (and the commons a
// restricted account keeps: its own account, the version); the gateway
// decides by route.
var Features = []string{"dashboard", "run", "exec", "agents", "inventory", "compliance", "activity",
	"events", "audit", "logs", "collect", "analytics", "jobs", "schedules", "views", "notifications",
	"rollout", "agent-install", "apps", "groups", "config", "jetstream", "accounts", "settings", "remote"}

// canonical checks keys against the catalog (the first unknown one is a
// 400), drops repeats and sorts them in catalog order.
func canonical(keys []string) ([]string, error) {
	out := []string{}
	for _, k := range keys {
		if !slices.Contains(Features, k) {
			return nil, api.BadRequest("unknown feature: %s", k)
		}
	}
	for _, f := range Features {
		if slices.Contains(keys, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// Group is a named set of features; an account in a group gets the
// group's features, whatever its own say.
type Group struct {
	Name      string    `json:"name"`
	Features  []string  `json:"features"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// effective is an account's allow-list: nil = unrestricted. In a group:
// the group's features, else (a dangling group) its own, else none: a
// group-assigned account is never unrestricted.
func effective(a *Account, groups map[string]*Group) *[]string {
	if a.PermissionGroup != "" {
		if g := groups[a.PermissionGroup]; g != nil {
			f := slices.Clone(g.Features)
			return &f
		}
		if a.AllowedFeatures != nil {
			f := slices.Clone(*a.AllowedFeatures)
			return &f
		}
		return &[]string{}
	}
	if a.AllowedFeatures == nil {
		return nil
	}
	f := slices.Clone(*a.AllowedFeatures)
	return &f
}

// triState reads a JSON key that may be absent (unchanged), null (clear)
// or a value.
type triState struct {
	set  bool
	null bool
	raw  json.RawMessage
}

func tri(raw json.RawMessage) triState {
	if len(raw) == 0 {
		return triState{}
	}
	if strings.TrimSpace(string(raw)) == "null" {
		return triState{set: true, null: true}
	}
	return triState{set: true, raw: raw}
}

// features reads an allowed_features value: absent, null, or a list.
func (t triState) features() (*[]string, error) {
	if !t.set || t.null {
		return nil, nil
	}
	var keys []string
	if err := json.Unmarshal(t.raw, &keys); err != nil {
		return nil, api.BadRequest("allowed_features: must be a list of feature keys")
	}
	c, err := canonical(keys)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// group reads a permission_group value: "" and null clear it.
func (t triState) group() (string, error) {
	if !t.set || t.null {
		return "", nil
	}
	var g string
	if err := json.Unmarshal(t.raw, &g); err != nil {
		return "", api.BadRequest("permission_group: must be a string")
	}
	return strings.TrimSpace(g), nil
}
