package natsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// RoleInboxPrefix is the reply-subject prefix viewer, operator and admin
// users' clients use (the operator's, for the same reason: agents can read
// plain _INBOX subjects).
const RoleInboxPrefix = OperatorInboxPrefix

// Role is the rights of a NATS-native caller of the kanade.> API at a
// tier, as the gateway grants them on HTTP: the subjects of every endpoint
// whose tier is at most this one, from the same definitions the services
// register (so a route's tier is written once), plus $SRV discovery. An
// admin may call all of kanade.>. No role may publish Commands.
//
// Services cannot tell which NATS user called (the actor of such a call's
// audit record is "nats" unless the server names the user), so a NATS
// user's requests are trusted to name no one else: give these users to
// people, and the gateway's own user to nothing else.
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
		SubscribeAllow: []string{RoleInboxPrefix + ".>"},
	}, nil
}

// selfService tells the endpoints that act on the caller's own account
// (me, change-password, MFA): the account is the one the gateway names, and
// a NATS user, who has none, could name anyone's.
func selfService(ep api.Endpoint) bool {
	return strings.HasPrefix(ep.Subject, "kanade.auth.") && ep.Tier != api.TierPublic
}

// RoleUsers lists one user per name at a tier, each with a new random
// password.
func RoleUsers(tier string, names []string, defs []api.Definition) ([]User, error) {
	p, err := Role(tier, defs)
	if err != nil {
		return nil, err
	}
	var out []User
	for _, n := range names {
		perm := p
		out = append(out, User{Name: n, Password: NewPassword(), Permissions: &perm,
			Comment: tier + ": nats --inbox-prefix " + RoleInboxPrefix + " ..."})
	}
	return out, nil
}
