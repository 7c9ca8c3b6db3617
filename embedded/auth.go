package embedded

import (
	"crypto/rand"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/natsauth"
)

// InternalUser is the user the backend's own in-process connections
// authenticate as when a config file turns authorization on. It is
// generated at each start with a random password and may connect only
// in-process, so no network client can use it even if it learnt the name.
const InternalUser = "kanade-internal"

// InternalInboxPrefix is the reply-subject prefix of in-process connections
// under authorization: agents may subscribe to _INBOX.> (their publish acks
// come there), so the backend's replies must not.
const InternalInboxPrefix = "_INBOX_kanade"

// internalAuth makes sure in-process connections get full rights under the
// authorization a config file set up, and returns the connect option they
// must use (nil when the server requires no authorization).
//
//   - users or nkeys: a generated in-process-only user without permission
//     limits is added, in the account named account (the global account
//     when empty).
//   - a single user/password: it becomes a users list with the generated
//     user beside it.
//   - a token: the in-process connections present the token.
//
// With account empty, a config that defines natsauth.BackendAccount (the
// layout `kanade nats-users` writes) puts them in that account. It
// returns the account they join ("" = the global account).
func internalAuth(opts *server.Options, account string) (nats.Option, string, error) {
	if account == "" {
		for _, a := range opts.Accounts {
			if a.Name == natsauth.BackendAccount {
				account = a.Name
			}
		}
	}
	o, err := internalAuthIn(opts, account)
	return o, account, err
}

func internalAuthIn(opts *server.Options, account string) (nats.Option, error) {
	if opts.Authorization != "" {
		if account != "" {
			return nil, fmt.Errorf("embedded nats: an account was named but the config authorizes by token")
		}
		return inProcessAuth(nats.Token(opts.Authorization)), nil
	}
	if opts.Username != "" {
		opts.Users = append(opts.Users, &server.User{Username: opts.Username, Password: opts.Password})
		opts.Username, opts.Password = "", ""
	}
	if len(opts.Users) == 0 && len(opts.Nkeys) == 0 {
		if account != "" {
			return nil, fmt.Errorf("embedded nats: account %q named but the config defines no users", account)
		}
		return nil, nil
	}
	for _, u := range opts.Users {
		if u.Username == InternalUser {
			return nil, fmt.Errorf("embedded nats: the config defines user %q, a name kanade reserves for itself", InternalUser)
		}
	}
	u := &server.User{
		Username:               InternalUser,
		Password:               rand.Text(),
		AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}},
	}
	if account != "" {
		for _, a := range opts.Accounts {
			if a.Name == account {
				u.Account = a
			}
		}
		if u.Account == nil {
			return nil, fmt.Errorf("embedded nats: account %q is not defined in the config", account)
		}
	}
	opts.Users = append(opts.Users, u)
	return inProcessAuth(nats.UserInfo(u.Username, u.Password)), nil
}

// inProcessAuth bundles the credentials with the private inbox prefix.
func inProcessAuth(cred nats.Option) nats.Option {
	return func(o *nats.Options) error {
		if err := cred(o); err != nil {
			return err
		}
		return nats.CustomInboxPrefix(InternalInboxPrefix)(o)
	}
}
