package natsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// RoleInboxPrefix is a reply-subject prefix callers' clients may use
// besides plain _INBOX (scripts written when callers shared the backend's
// account had to).
const RoleInboxPrefix = OperatorInboxPrefix

// Role is the rights of a NATS-native caller of the kanade.> API at a
// tier, as the gateway grants them on HTTP: the subjects of every endpoint
// whose tier is at most this one, from the same definitions the services
// register (so a route's tier is written once), plus $SRV discovery. An
// admin may call all of kanade.>. No role may publish Commands.
//
// The user lives in an account of its own (Layout.Callers), which reaches
// the backend only through its imports of kanade.> and $SRV.>: the server
// names the user on each request, and that name is the audit record's
// actor, whatever the request says.
func Role(tier string, defs []api.Definition) (Permissions, error) {
	rank := api.TierRank(tier)
	if rank < 1 {
		return Permissions{}, fmt.Errorf("role %q: want viewer, operator or admin", tier)
	}
	var allow []string
	if tier == api.TierAdmin {
		allow = []string{"kanade.>"}
	} else {
		for _, d := range defs {
			for _, ep := range d.Endpoints {
				r := api.TierRank(ep.Tier)
				if selfService(ep) {
					continue
				}
				if r >= 0 && r <= rank && !slices.Contains(allow, ep.Subject) {
					allow = append(allow, ep.Subject)
				}
			}
		}
		slices.Sort(allow)
	}
	allow = append(allow, "$SRV.>")
	return Permissions{
		PublishAllow:   allow,
		PublishDeny:    []string{wire.SubjectCommandsAny},
		SubscribeAllow: []string{"_INBOX.>", RoleInboxPrefix + ".>"},
	}, nil
}

// selfService tells the endpoints that act on the caller's own account
// (me, change-password, MFA): the account is the one the gateway names, and
// a NATS user, who has none, could name anyone's.
func selfService(ep api.Endpoint) bool {
	return strings.HasPrefix(ep.Subject, "kanade.auth.") && ep.Tier != api.TierPublic
}

// RoleUsers lists one API caller (for Layout.Callers) per name at a tier,
// each with a new random password.
func RoleUsers(tier string, names []string, defs []api.Definition) ([]User, error) {
	p, err := Role(tier, defs)
	if err != nil {
		return nil, err
	}
	var out []User
	for _, n := range names {
		perm := p
		out = append(out, User{Name: n, Password: NewPassword(), Permissions: &perm,
			Comment: tier + ": nats --user " + n + " --password ... req kanade.results.list '{}'"})
	}
	return out, nil
}
