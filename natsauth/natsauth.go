// Package natsauth writes nats-server authorization for kanade's three
// roles, so that a node's embedded server (--nats-config) keeps each agent
// in its lane:
//
//   - agent: publishes only its own results, started events and heartbeat,
//     hears its Commands and kills, answers its own live-tail and ping
//     requests; may not publish Commands nor call the kanade.> API.
//   - operator: calls the kanade.> API and $SRV discovery, reads streams.
//   - backend: everything (other backend nodes, admin tools).
//
// The backend's own in-process connections need no user here: the embedded
// server gives them a generated in-process-only user (embedded.InternalUser).
//
// Config-file permissions cannot be templated per user, so each agent gets
// its own block naming its pc_id; Render writes them for a fleet.
package natsauth

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/kanade-go/kanade/wire"
)

// OperatorInboxPrefix is the reply-subject prefix operators' clients must
// use (`nats --inbox-prefix _INBOX_operator`). Agents need `_INBOX.>` for
// their publish acks, so any reply sent to a plain _INBOX subject could be
// read by an agent; operators' API answers go elsewhere.
const OperatorInboxPrefix = "_INBOX_operator"

// Permissions are one user's rights, in nats-server's terms.
type Permissions struct {
	PublishAllow   []string
	PublishDeny    []string
	SubscribeAllow []string
	SubscribeDeny  []string
	// AllowResponses lets the user answer requests it received (one reply
	// each), whatever their reply subject.
	AllowResponses bool
}

// Agent is the rights of the agent on pc.
func Agent(pc string) (Permissions, error) {
	if !wire.ValidToken(pc) {
		return Permissions{}, fmt.Errorf("pc_id %q cannot stand in a subject", pc)
	}
	objStream := "OBJ_" + wire.ObjectStoreOutput
	kvStream := "KV_" + wire.BucketAgentGroups
	ownGroups := "$KV." + wire.BucketAgentGroups + "." + pc
	return Permissions{
		PublishAllow: []string{
			wire.SubjectResultsAll, // results.{request_id}: the request id is not the pc's
			wire.Started("*", pc),  // events.started.{exec_id}.{pc}
			wire.HeartbeatSubject(pc),
			// Outputs over 256 KiB go to the object store.
			"$O." + wire.ObjectStoreOutput + ".>",
			"$JS.API.STREAM.INFO." + objStream,
			"$JS.API.STREAM.MSG.GET." + objStream,
			"$JS.API.DIRECT.GET." + objStream + ".>",
			// Replaying the latest Commands of EXEC on reconnect.
			"$JS.API.STREAM.INFO." + wire.StreamExec,
			"$JS.API.CONSUMER.CREATE." + wire.StreamExec + ".>",
			"$JS.API.CONSUMER.INFO." + wire.StreamExec + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + wire.StreamExec + ".>",
			"$JS.ACK." + wire.StreamExec + ".>",
			// Reading its own group membership.
			"$JS.API.STREAM.INFO." + kvStream,
			"$JS.API.DIRECT.GET." + kvStream + "." + ownGroups,
		},
		PublishDeny: []string{wire.SubjectCommandsAny, "kanade.>"},
		SubscribeAllow: []string{
			wire.SubjectCommandsAll,
			wire.CommandsGroup("*"),
			wire.CommandsPC(pc),
			wire.Kill("*"),
			wire.JobTail(pc),
			wire.Ping(pc),
			"_INBOX.>", // JetStream publish acks and API replies
		},
		AllowResponses: true,
	}, nil
}

// Operator is the rights of an operator: the API, service discovery and
// reading (not changing) the streams.
func Operator() Permissions {
	return Permissions{
		PublishAllow: []string{
			"kanade.>",
			"$SRV.>",
			"$JS.API.INFO",
			"$JS.API.STREAM.NAMES",
			"$JS.API.STREAM.LIST",
			"$JS.API.STREAM.INFO.*",
			"$JS.API.STREAM.MSG.GET.*",
			"$JS.API.DIRECT.GET.>",
			"$JS.API.CONSUMER.CREATE.>",
			"$JS.API.CONSUMER.INFO.>",
			"$JS.API.CONSUMER.NAMES.*",
			"$JS.API.CONSUMER.LIST.*",
			"$JS.API.CONSUMER.MSG.NEXT.>",
			"$JS.ACK.>",
			"$JS.FC.>",
		},
		PublishDeny:    []string{wire.SubjectCommandsAny},
		SubscribeAllow: []string{OperatorInboxPrefix + ".>"},
	}
}

// User is one entry of the users list.
type User struct {
	Name     string
	Password string // plain or a bcrypt hash (`nats server passwd`)
	Comment  string
	// Permissions nil = no limits (the backend role).
	Permissions *Permissions
}

// Render writes a nats-server configuration with an authorization block
// listing users, ready for `kanade serve --nats-config`.
func Render(users []User) (string, error) {
	var b strings.Builder
	b.WriteString("# NATS users for kanade's roles: agent, operator, backend.\n")
	b.WriteString("# Load with: kanade serve --nats-config FILE\n")
	b.WriteString("authorization {\n  users = [\n")
	seen := map[string]bool{}
	for _, u := range users {
		if u.Name == "" || u.Password == "" {
			return "", fmt.Errorf("user %q: a name and a password are required", u.Name)
		}
		if seen[u.Name] {
			return "", fmt.Errorf("user %q listed twice", u.Name)
		}
		seen[u.Name] = true
		if u.Comment != "" {
			for _, l := range strings.Split(u.Comment, "\n") {
				fmt.Fprintf(&b, "    # %s\n", l)
			}
		}
		fmt.Fprintf(&b, "    {user: %s, password: %s", quote(u.Name), quote(u.Password))
		if p := u.Permissions; p != nil {
			b.WriteString(", permissions: {\n")
			writeRule(&b, "publish", p.PublishAllow, p.PublishDeny)
			writeRule(&b, "subscribe", p.SubscribeAllow, p.SubscribeDeny)
			if p.AllowResponses {
				b.WriteString("      allow_responses: true\n")
			}
			b.WriteString("    }")
		}
		b.WriteString("}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func writeRule(b *strings.Builder, name string, allow, deny []string) {
	if len(allow) == 0 && len(deny) == 0 {
		return
	}
	fmt.Fprintf(b, "      %s: {\n", name)
	list := func(key string, ss []string) {
		if len(ss) == 0 {
			return
		}
		fmt.Fprintf(b, "        %s: [\n", key)
		for _, s := range ss {
			fmt.Fprintf(b, "          %s\n", quote(s))
		}
		b.WriteString("        ]\n")
	}
	list("allow", allow)
	list("deny", deny)
	b.WriteString("      }\n")
}

// quote writes a double-quoted string; nats-server's config reads quoted
// strings literally, so "$JS.API..." is not taken for a variable.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Fleet lists a backend user, an operator and one agent user per pc (user
// name = pc_id), each with a new random password. An empty backend or
// operator name leaves that role out.
func Fleet(pcs []string, backend, operator string) ([]User, error) {
	var users []User
	if backend != "" {
		users = append(users, User{Name: backend, Password: NewPassword(), Comment: "backend: everything"})
	}
	if operator != "" {
		op := Operator()
		users = append(users, User{Name: operator, Password: NewPassword(), Permissions: &op,
			Comment: "operator: nats --inbox-prefix " + OperatorInboxPrefix + " ..."})
	}
	for _, pc := range pcs {
		p, err := Agent(pc)
		if err != nil {
			return nil, err
		}
		users = append(users, User{Name: pc, Password: NewPassword(), Permissions: &p, Comment: "agent " + pc})
	}
	return users, nil
}

// NewPassword is 24 random bytes, hex encoded.
func NewPassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}
