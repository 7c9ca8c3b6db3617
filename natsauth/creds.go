package natsauth

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// AgentCredentials reads, from a configuration Render wrote, each agent
// account's user and password (pc_id -> password), for simulated agents
// on per-PC credentials (`kanade sim --nats-config`). A bcrypt hash is
// returned as it is, and will not log in.
func AgentCredentials(path string) (map[string]string, error) {
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]string{}
	for _, u := range o.Users {
		if u.Account == nil || !strings.HasPrefix(u.Account.Name, AgentAccountPrefix) {
			continue
		}
		if u.Account.Name != AgentAccount(u.Username) {
			continue // not the layout's: account AGENT_{pc}, user {pc}
		}
		out[u.Username] = u.Password
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no agent accounts (%s{pc_id}) in it", path, AgentAccountPrefix)
	}
	return out, nil
}

// SortedPCs lists the keys of creds in order.
func SortedPCs(creds map[string]string) []string {
	pcs := make([]string, 0, len(creds))
	for pc := range creds {
		pcs = append(pcs, pc)
	}
	sort.Strings(pcs)
	return pcs
}
