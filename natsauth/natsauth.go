// Package natsauth writes the nats-server configuration that keeps each
// agent in its lane: accounts, users, exports and imports for
// `kanade serve --nats-config` (made by `kanade nats-users`).
//
// The layout (see README, "Keeping agents in their lane"):
//
//   - BackendAccount holds JetStream (every stream, KV bucket and object
//     store), the backend's services and the users of the backend side: a
//     `backend` user with every right (other nodes, admin tools), and the
//     node's own in-process connections (embedded.InternalUser).
//   - Each agent has an account of its own, AgentAccount(pc), with one user
//     (name = pc_id). It holds nothing: it sees only what it imports from
//     the backend account (its Commands and the kills, live, as stream
//     imports), reaches the backend only through service imports of exactly
//     its lane (its results, its started events, its heartbeat, large
//     outputs, and a few read-only JetStream API subjects), and exports its
//     job.tail.{pc}, agents.{pc}.ping and logs.fetch.{pc} to the backend
//     (through RequestsAccount).
//   - Its results and stream lookups reach JetStream through relays every
//     node runs (Relay): the results relay knows the sender from the subject
//     the agent's import maps to, and refuses a result in another pc_id.
//   - Its command replay (upstream's durable pull consumer
//     ReplayConsumer(pc) on EXEC) is created through a relay too, which
//     keeps the consumer a pull consumer filtered within the agent's lane;
//     the agent imports that consumer's info, pulls and acks by name.
//   - Watches of its KV keys (ordered push consumers) are created through
//     a relay as well (KVWatchRelay), delivering to KVDeliverPrefix.{pc},
//     which its account alone imports, as its _INBOX.>.
//   - Each NATS-native caller of the API (a viewer, operator or admin user,
//     see Role) has an account of its own too, CallerAccount(name), which
//     imports from the backend account the endpoint subjects of its tier
//     and $SRV.>, with share on: the server then stamps every request with
//     the caller's account and user (Nats-Request-Info, replacing any the
//     caller wrote), so the services audit it as "nats:<user>" and the
//     caller cannot name another actor; and, holding no JetStream, it
//     cannot create consumers that deliver into commands.> or read a
//     bucket.
//
// Why one account per agent: a request's reply subject is not checked
// against the requester's permissions, and the JetStream API (or any
// service) answers with its own rights to whatever reply the requester
// named. Across a service import the server replaces that reply with a
// private _R_ subject and delivers the answer back in the requester's own
// account, under the name it chose. So an answer can land only in the
// agent's own account, where nothing but that agent listens: not on the
// backend's commands.>, kill.>, $KV.* or $JS.*, and not on another agent's
// commands.pc.{pc}, kill.* or _INBOX.>, as it could if agents shared one.
package natsauth

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// BackendAccount is the account of JetStream, the backend's services and
// users, and the node's own connections.
const BackendAccount = "KANADE"

// RequestsAccount relays the backend's requests to the agents (live tail,
// ping, logs): it imports each agent's exports and exports them on to the
// backend account under wildcards. It has no users. The hop keeps the
// server's start linear in the fleet: nats-server checks every service
// import for cycles against the imports of the account it imports from,
// and with the backend importing from each agent directly that check made
// a start quadratic (28 s for 2,500 agents, measured).
const RequestsAccount = "KANADE_AGENT_REQUESTS"

// AgentAccountPrefix starts every agent account's name.
const AgentAccountPrefix = "AGENT_"

// AgentAccount is the account of the agent on pc.
func AgentAccount(pc string) string { return AgentAccountPrefix + pc }

// CallerAccountPrefix starts the account name of every NATS-native caller
// of the API (viewer, operator and admin users).
const CallerAccountPrefix = api.CallerAccountPrefix

// CallerAccount is the account of the API caller name.
func CallerAccount(name string) string { return CallerAccountPrefix + name }

// OperatorInboxPrefix is a reply-subject prefix callers' clients may use
// (`nats --inbox-prefix _INBOX_operator`), as they had to when they shared
// the backend's account; in an account of their own plain _INBOX works.
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

// User is one user of the backend account.
type User struct {
	Name     string
	Password string // plain or a bcrypt hash (`nats server passwd`)
	Comment  string
	// Permissions nil = no limits within the backend account.
	Permissions *Permissions
}

// Agent is one agent: an account of its own with one user, Name = pc_id.
type Agent struct {
	PC       string
	Password string
}

// Layout is everything Render writes.
type Layout struct {
	// Backend are the users of BackendAccount, in order: the backend's
	// own (other nodes, admin tools), trusted to name the actor they act
	// for.
	Backend []User
	// Callers are the NATS-native callers of the API, each alone in
	// CallerAccount(Name), its reach that of its tier (see Role).
	Callers []Caller
	// API are the endpoints callers may reach (node.Definitions()):
	// required with Callers.
	API    []api.Definition
	Agents []Agent
}

// Import is one import of an account: a service (requests and publishes
// into the other account) or a stream (the other account's messages
// delivered here).
type Import struct {
	Service bool
	Account string
	Subject string
	// To is the subject in the importing account, when not Subject.
	To string
	// Share: the server adds the requester's user and host to the
	// Nats-Request-Info header it sets on each request (it sets the header,
	// with the account alone, either way, and replaces one the requester
	// wrote).
	Share bool
}

// noJSInfo is a backend export nothing answers. Agent accounts import it
// as $JS.API.INFO: an account without JetStream that imports no subject
// covering $JS.API.INFO gets the server's own JetStream API import, which
// shadows the imports of the lane and answers "JetStream not enabled".
const noJSInfo = "_kanade.agents.no_js_info"

// Export is one export: a service or a stream; Accounts empty = public.
type Export struct {
	Service  bool
	Subject  string
	Accounts []string
	// Streamed: a request may get many answers (a pull request's messages
	// and status), not one.
	Streamed bool
	// Threshold is how long an answer may take ("" = the server's 2 m).
	Threshold string
}

// The lane, in the terms of the JetStream objects agents touch.
const (
	objStream  = "OBJ_" + wire.ObjectStoreOutput
	objSubject = "$O." + wire.ObjectStoreOutput
)

// KVRead is a KV bucket agents read, and the keys each may read: "{pc}"
// in a key stands for the agent's pc_id, "*" for any one token. Reads are
// direct gets naming the key in the API subject; watches of the same keys
// go through the backend's relay (KVWatchRelay), which delivers them to
// the agent's own prefix.
type KVRead struct {
	Bucket string
	Keys   []string
	// Watch: upstream agents also watch these keys (kv.watch, watch_all),
	// so the account imports the watch relay for this bucket.
	Watch bool
}

// AgentKV lists the KV buckets agents read. This backend creates only
// agent_groups so far; the others are upstream's buckets agents read
// (revocation, version pin, layered config), ready for when they exist.
var AgentKV = []KVRead{
	{Bucket: wire.BucketAgentGroups, Keys: []string{"{pc}"}, Watch: true},
	{Bucket: "agent_groups_derived", Keys: []string{"{pc}"}, Watch: true},
	{Bucket: "script_status", Keys: []string{"*"}},
	{Bucket: "script_current", Keys: []string{"*"}},
	{Bucket: "agent_config", Keys: []string{"global", "groups.*", "pcs.{pc}", "target_version"}, Watch: true},
	// Every upstream agent watches the catalog and the freeze: it ticks
	// runs_on: agent schedules itself and honours the freeze locally.
	{Bucket: wire.BucketJobs, Keys: []string{"*"}, Watch: true},
	{Bucket: wire.BucketSchedules, Keys: []string{"*"}, Watch: true},
	{Bucket: "fleet_config", Keys: []string{"freeze"}, Watch: true},
}

func kvKeys(r KVRead, pc string) []string {
	out := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		out[i] = strings.ReplaceAll(k, "{pc}", pc)
	}
	return out
}

// BackendExports are the backend account's exports: the agent side of the
// lane, for the agent accounts to import (each imports only its own part).
func BackendExports() []Export {
	out := []Export{
		// Agent -> backend: publishes (acked through the service's reply);
		// results through the relay, which checks their pc_id.
		{Service: true, Subject: ResultsRelay + ".*.>"},
		{Service: true, Subject: wire.Started("*", "*")},
		{Service: true, Subject: wire.HeartbeatSubject("*")},
		{Service: true, Subject: objSubject + ".C.*"},
		{Service: true, Subject: objSubject + ".M.*"},
		// Read-only JetStream API: stream lookups (through the relay) and
		// direct gets, the subject read named in the API subject (never in
		// the body).
		{Service: true, Subject: StreamInfoRelay + ".*"},
		{Service: true, Subject: "$JS.API.DIRECT.GET." + wire.StreamExec + "." + wire.SubjectCommandsAny},
		{Service: true, Subject: "$JS.API.DIRECT.GET." + objStream + "." + objSubject + ".M.*"},
		{Service: true, Subject: noJSInfo},
		// Command replay: each agent's own durable pull consumer on EXEC,
		// created through the relay (see ReplayConsumerRelay), looked up,
		// pulled from and acked by name.
		{Service: true, Subject: ReplayConsumerRelay + ".>"},
		{Service: true, Subject: "$JS.API.CONSUMER.INFO." + wire.StreamExec + ".*"},
		{Service: true, Subject: "$JS.API.CONSUMER.MSG.NEXT." + wire.StreamExec + ".*", Streamed: true},
		{Service: true, Subject: "$JS.ACK." + wire.StreamExec + ".*.>"},
	}
	for _, r := range AgentKV {
		out = append(out,
			Export{Service: true, Subject: "$JS.API.DIRECT.GET.KV_" + r.Bucket + ".$KV." + r.Bucket + ".>"})
		if r.Watch { // watches' flow control answers
			out = append(out, Export{Service: true, Subject: "$JS.FC.KV_" + r.Bucket + ".>"})
		}
	}
	return append(out, []Export{
		// KV watches: created through the relay (see KVWatchRelay),
		// delivered to each agent's own prefix.
		{Service: true, Subject: KVWatchRelay + ".>"},
		{Service: true, Subject: KVUnwatchRelay + ".>"},
		{Subject: KVDeliverPrefix + ".*.>"},
		// Backend -> agents, live.
		{Subject: wire.SubjectCommandsAny},
		{Subject: wire.Kill("*")},
	}...)
}

// callerLanes are the backend account's exports to the API callers'
// accounts, and each caller's imports: one service per endpoint subject,
// exported to the callers whose tier reaches it (its response threshold
// the endpoint's wait, so kanade.run's answer may take an hour, a list's
// entry goes in seconds), and $SRV.> (many instances answer a $SRV.PING).
// Imports have share on, so every request carries who sent it.
func callerLanes(l Layout) ([]Export, map[string][]Import, error) {
	if len(l.Callers) == 0 {
		return nil, nil, nil
	}
	if len(l.API) == 0 {
		return nil, nil, fmt.Errorf("API callers need the API's definitions (Layout.API)")
	}
	var exports []Export
	at := map[string]int{} // subject -> index in exports
	imports := map[string][]Import{}
	var all []string
	for _, c := range l.Callers {
		acc := CallerAccount(c.Name)
		all = append(all, acc)
		subjects, err := tierSubjects(c.Tier, l.API)
		if err != nil {
			return nil, nil, fmt.Errorf("caller %q: %w", c.Name, err)
		}
		for _, s := range subjects {
			i, ok := at[s.Subject]
			if !ok {
				i = len(exports)
				at[s.Subject] = i
				exports = append(exports, Export{Service: true, Subject: s.Subject, Threshold: s.Wait.String()})
			}
			exports[i].Accounts = append(exports[i].Accounts, acc)
			imports[acc] = append(imports[acc], Import{Service: true, Account: BackendAccount, Subject: s.Subject, Share: true})
		}
		imports[acc] = append(imports[acc], Import{Service: true, Account: BackendAccount, Subject: "$SRV.>", Share: true})
	}
	exports = append(exports, Export{Service: true, Subject: "$SRV.>", Accounts: all, Streamed: true, Threshold: srvWait})
	return exports, imports, nil
}

// AgentImports are the imports of pc's account from the backend account:
// exactly its lane.
func AgentImports(pc string) []Import {
	svc := func(s string) Import { return Import{Service: true, Account: BackendAccount, Subject: s} }
	str := func(s string) Import { return Import{Account: BackendAccount, Subject: s} }
	// Stream lookups go through the backend's relay (see Relay).
	info := func(stream string) Import {
		return Import{Service: true, Account: BackendAccount, Subject: StreamInfoRelay + "." + stream,
			To: "$JS.API.STREAM.INFO." + stream}
	}
	out := []Import{
		// results.{request_id}: the request id is not the pc's, so the
		// import names it for the relay (see Relay).
		{Service: true, Account: BackendAccount, Subject: ResultsRelay + "." + pc + ".>", To: wire.SubjectResultsAll},
		svc(wire.Started("*", pc)),
		svc(wire.HeartbeatSubject(pc)),
		// Outputs over 256 KiB: chunks and meta; reading back only metas
		// (a put looks up the key first), never chunks.
		svc(objSubject + ".C.*"),
		svc(objSubject + ".M.*"),
		info(objStream),
		svc("$JS.API.DIRECT.GET." + objStream + "." + objSubject + ".M.*"),
		// The latest Command of each of its subjects, replayed on reconnect.
		info(wire.StreamExec),
		svc("$JS.API.DIRECT.GET." + wire.StreamExec + "." + wire.SubjectCommandsAll),
		svc("$JS.API.DIRECT.GET." + wire.StreamExec + "." + wire.CommandsGroup("*")),
		svc("$JS.API.DIRECT.GET." + wire.StreamExec + "." + wire.CommandsPC(pc)),
		{Service: true, Account: BackendAccount, Subject: noJSInfo, To: "$JS.API.INFO"},
		// Command replay as upstream agents do it: their own durable pull
		// consumer, created through the relay, which keeps its filter in
		// this lane; its lookup, pulls and acks by its name only.
		{Service: true, Account: BackendAccount, Subject: ReplayConsumerRelay + "." + pc,
			To: "$JS.API.CONSUMER.CREATE." + wire.StreamExec + "." + ReplayConsumer(pc)},
		{Service: true, Account: BackendAccount, Subject: ReplayConsumerRelay + "." + pc + ".>",
			To: "$JS.API.CONSUMER.CREATE." + wire.StreamExec + "." + ReplayConsumer(pc) + ".>"},
		svc("$JS.API.CONSUMER.INFO." + wire.StreamExec + "." + ReplayConsumer(pc)),
		svc("$JS.API.CONSUMER.MSG.NEXT." + wire.StreamExec + "." + ReplayConsumer(pc)),
		svc("$JS.ACK." + wire.StreamExec + "." + ReplayConsumer(pc) + ".>"),
		// Commands and kills, live.
		str(wire.SubjectCommandsAll),
		str(wire.CommandsGroup("*")),
		str(wire.CommandsPC(pc)),
		str(wire.Kill("*")),
	}
	// The KV keys it reads (its own group membership, …), and watches of
	// them: created through the relay, which keeps them on those keys and
	// delivers them to this agent's prefix, heard here as its _INBOX.>.
	for _, r := range AgentKV {
		out = append(out, info("KV_"+r.Bucket))
		for _, k := range kvKeys(r, pc) {
			out = append(out, svc("$JS.API.DIRECT.GET.KV_"+r.Bucket+".$KV."+r.Bucket+"."+k))
		}
		if !r.Watch {
			continue
		}
		create := "$JS.API.CONSUMER.CREATE.KV_" + r.Bucket
		relay := KVWatchRelay + "." + pc + ".KV_" + r.Bucket
		out = append(out,
			Import{Service: true, Account: BackendAccount, Subject: relay, To: create},
			Import{Service: true, Account: BackendAccount, Subject: relay + ".>", To: create + ".>"},
			Import{Service: true, Account: BackendAccount, Subject: KVUnwatchRelay + "." + pc + ".KV_" + r.Bucket + ".*",
				To: "$JS.API.CONSUMER.DELETE.KV_" + r.Bucket + ".*"},
			svc("$JS.FC.KV_"+r.Bucket+".>"))
	}
	out = append(out, Import{Account: BackendAccount, Subject: KVDeliverPrefix + "." + pc + ".>", To: agentInbox + ">"})
	return out
}

// AgentExports are the requests pc's agent answers, for the backend only
// (through RequestsAccount).
func AgentExports(pc string) []Export {
	to := []string{RequestsAccount}
	return []Export{
		{Service: true, Subject: wire.JobTail(pc), Accounts: to},
		{Service: true, Subject: wire.Ping(pc), Accounts: to},
		{Service: true, Subject: wire.LogsFetch(pc), Accounts: to},
	}
}

// RequestsImports are RequestsAccount's imports of pc's exports.
func RequestsImports(pc string) []Import {
	var out []Import
	for _, e := range AgentExports(pc) {
		out = append(out, Import{Service: true, Account: AgentAccount(pc), Subject: e.Subject})
	}
	return out
}

// RequestsExports are what RequestsAccount passes on to the backend.
func RequestsExports() []Export {
	to := []string{BackendAccount}
	return []Export{
		{Service: true, Subject: wire.JobTail("*"), Accounts: to},
		{Service: true, Subject: wire.Ping("*"), Accounts: to},
		{Service: true, Subject: wire.LogsFetch("*"), Accounts: to},
	}
}

// BackendImports are the backend account's imports: the agents' requests.
func BackendImports() []Import {
	var out []Import
	for _, e := range RequestsExports() {
		out = append(out, Import{Service: true, Account: RequestsAccount, Subject: e.Subject})
	}
	return out
}

// AgentPermissions are the agent user's rights inside its account: a
// second wall, naming the same subjects as its imports.
func AgentPermissions(pc string) Permissions {
	var p Permissions
	for _, im := range AgentImports(pc) {
		if im.To == "$JS.API.INFO" {
			continue // answers nothing
		}
		if im.To != "" {
			if !im.Service {
				continue // heard under the agent's inbox, allowed below
			}
			p.PublishAllow = append(p.PublishAllow, im.To)
			continue
		}
		if im.Service {
			p.PublishAllow = append(p.PublishAllow, im.Subject)
		} else {
			p.SubscribeAllow = append(p.SubscribeAllow, im.Subject)
		}
	}
	for _, e := range AgentExports(pc) {
		p.SubscribeAllow = append(p.SubscribeAllow, e.Subject)
	}
	// Replies to its own requests (publish acks, API answers) come back in
	// its own account, under its own inbox.
	p.SubscribeAllow = append(p.SubscribeAllow, "_INBOX.>")
	p.AllowResponses = true
	return p
}

// Validate checks names and passwords.
func (l Layout) Validate() error {
	seen := map[string]string{}
	claim := func(name, what string) error {
		if name == "" {
			return fmt.Errorf("%s: a name is required", what)
		}
		if prev, ok := seen[name]; ok {
			return fmt.Errorf("user %q is both %s and %s", name, prev, what)
		}
		seen[name] = what
		return nil
	}
	for _, u := range l.Backend {
		if err := claim(u.Name, "a backend user"); err != nil {
			return err
		}
		if u.Password == "" {
			return fmt.Errorf("user %q: a password is required", u.Name)
		}
	}
	for _, c := range l.Callers {
		// The name is part of its account's name and of the actor
		// ("nats:<user>") audit records carry.
		if !wire.ValidToken(c.Name) {
			return fmt.Errorf("caller %q: a name without dots, spaces or wildcards is required", c.Name)
		}
		if err := claim(c.Name, "an API caller"); err != nil {
			return err
		}
		if c.Password == "" {
			return fmt.Errorf("user %q: a password is required", c.Name)
		}
		if api.TierRank(c.Tier) < 1 {
			return fmt.Errorf("caller %q: tier %q: want viewer, operator or admin", c.Name, c.Tier)
		}
	}
	replay := map[string]string{}
	for _, a := range l.Agents {
		if !wire.ValidToken(a.PC) {
			return fmt.Errorf("pc_id %q cannot stand in a subject", a.PC)
		}
		// Upstream's consumer name folds some characters into '_': two
		// agents must not share one replay consumer.
		if prev, ok := replay[ReplayConsumer(a.PC)]; ok {
			return fmt.Errorf("pc_ids %q and %q share the replay consumer %s", prev, a.PC, ReplayConsumer(a.PC))
		}
		replay[ReplayConsumer(a.PC)] = a.PC
		if err := claim(a.PC, "an agent"); err != nil {
			return err
		}
		if a.Password == "" {
			return fmt.Errorf("agent %q: a password is required", a.PC)
		}
	}
	return nil
}

// Render writes the nats-server configuration of l, ready for
// `kanade serve --nats-config`.
func Render(l Layout) (string, error) {
	if err := l.Validate(); err != nil {
		return "", err
	}
	callerExports, callerImports, err := callerLanes(l)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# NATS accounts for kanade (kanade nats-users): the backend's account, one account\n")
	b.WriteString("# per API caller holding only its tier's endpoints, and one per agent holding only\n")
	b.WriteString("# that agent's lane. Load with:\n")
	b.WriteString("#   kanade serve --nats-config FILE\n")
	b.WriteString("accounts {\n")
	fmt.Fprintf(&b, "  %s: {\n    jetstream: enabled\n    users: [\n", quote(BackendAccount))
	for _, u := range l.Backend {
		writeComment(&b, "      ", u.Comment)
		writeUser(&b, "      ", u.Name, u.Password, u.Permissions)
	}
	b.WriteString("    ]\n")
	writeExports(&b, append(BackendExports(), callerExports...))
	writeImports(&b, BackendImports())
	b.WriteString("  }\n")
	for _, c := range l.Callers {
		fmt.Fprintf(&b, "  # API caller %s (%s), alone in its account: the server names it on every request\n", c.Name, c.Tier)
		fmt.Fprintf(&b, "  %s: {\n    users: [\n", quote(CallerAccount(c.Name)))
		writeComment(&b, "      ", c.Comment)
		p := c.Permissions
		if p == nil {
			role, err := Role(c.Tier, l.API)
			if err != nil {
				return "", err
			}
			p = &role
		}
		writeUser(&b, "      ", c.Name, c.Password, p)
		b.WriteString("    ]\n")
		writeImports(&b, callerImports[CallerAccount(c.Name)])
		b.WriteString("  }\n")
	}
	b.WriteString("  # the backend's requests to agents (tail, ping, logs), relayed to each agent's account\n")
	fmt.Fprintf(&b, "  %s: {\n", quote(RequestsAccount))
	writeExports(&b, RequestsExports())
	var imports []Import
	for _, a := range l.Agents {
		imports = append(imports, RequestsImports(a.PC)...)
	}
	writeImports(&b, imports)
	b.WriteString("  }\n")
	for _, a := range l.Agents {
		fmt.Fprintf(&b, "  # agent %s: its own results, events and heartbeat; its Commands, kills, tail and ping\n", a.PC)
		fmt.Fprintf(&b, "  %s: {\n    users: [\n", quote(AgentAccount(a.PC)))
		p := AgentPermissions(a.PC)
		writeUser(&b, "      ", a.PC, a.Password, &p)
		b.WriteString("    ]\n")
		writeExports(&b, AgentExports(a.PC))
		writeImports(&b, AgentImports(a.PC))
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

func writeComment(b *strings.Builder, indent, c string) {
	if c == "" {
		return
	}
	for _, l := range strings.Split(c, "\n") {
		fmt.Fprintf(b, "%s# %s\n", indent, l)
	}
}

func writeUser(b *strings.Builder, indent, name, password string, p *Permissions) {
	fmt.Fprintf(b, "%s{user: %s, password: %s", indent, quote(name), quote(password))
	if p != nil {
		b.WriteString(", permissions: {\n")
		writeRule(b, indent+"  ", "publish", p.PublishAllow, p.PublishDeny)
		writeRule(b, indent+"  ", "subscribe", p.SubscribeAllow, p.SubscribeDeny)
		if p.AllowResponses {
			fmt.Fprintf(b, "%s  allow_responses: true\n", indent)
		}
		b.WriteString(indent + "}")
	}
	b.WriteString("}\n")
}

func writeRule(b *strings.Builder, indent, name string, allow, deny []string) {
	if len(allow) == 0 && len(deny) == 0 {
		return
	}
	fmt.Fprintf(b, "%s%s: {\n", indent, name)
	list := func(key string, ss []string) {
		if len(ss) == 0 {
			return
		}
		fmt.Fprintf(b, "%s  %s: [\n", indent, key)
		for _, s := range ss {
			fmt.Fprintf(b, "%s    %s\n", indent, quote(s))
		}
		fmt.Fprintf(b, "%s  ]\n", indent)
	}
	list("allow", allow)
	list("deny", deny)
	fmt.Fprintf(b, "%s}\n", indent)
}

func writeExports(b *strings.Builder, ex []Export) {
	if len(ex) == 0 {
		return
	}
	b.WriteString("    exports: [\n")
	for _, e := range ex {
		kind := "stream"
		if e.Service {
			kind = "service"
		}
		fmt.Fprintf(b, "      {%s: %s", kind, quote(e.Subject))
		if len(e.Accounts) > 0 {
			q := make([]string, len(e.Accounts))
			for i, a := range e.Accounts {
				q[i] = quote(a)
			}
			fmt.Fprintf(b, ", accounts: [%s]", strings.Join(q, ", "))
		}
		if e.Streamed {
			b.WriteString(`, response_type: "stream"`)
		}
		if e.Threshold != "" {
			fmt.Fprintf(b, ", response_threshold: %s", quote(e.Threshold))
		}
		b.WriteString("}\n")
	}
	b.WriteString("    ]\n")
}

func writeImports(b *strings.Builder, im []Import) {
	if len(im) == 0 {
		return
	}
	b.WriteString("    imports: [\n")
	for _, i := range im {
		kind := "stream"
		if i.Service {
			kind = "service"
		}
		fmt.Fprintf(b, "      {%s: {account: %s, subject: %s}", kind, quote(i.Account), quote(i.Subject))
		if i.To != "" {
			fmt.Fprintf(b, ", to: %s", quote(i.To))
		}
		if i.Share {
			b.WriteString(", share: true")
		}
		b.WriteString("}\n")
	}
	b.WriteString("    ]\n")
}

// quote writes a double-quoted string; nats-server's config reads quoted
// strings literally, so "$JS.API..." is not taken for a variable.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Fleet is the layout `kanade nats-users` writes: a backend user with
// every right (unless backend is "") and one agent per pc, each with a new
// random password. API callers (RoleUsers) are added to its Callers.
func Fleet(pcs []string, backend string) (Layout, error) {
	var l Layout
	if backend != "" {
		l.Backend = append(l.Backend, User{Name: backend, Password: NewPassword(),
			Comment: "backend: every right in the backend's account (other backend nodes, admin tools)"})
	}
	for _, pc := range pcs {
		if slices.ContainsFunc(l.Agents, func(a Agent) bool { return a.PC == pc }) {
			return Layout{}, fmt.Errorf("pc_id %q listed twice", pc)
		}
		l.Agents = append(l.Agents, Agent{PC: pc, Password: NewPassword()})
	}
	return l, l.Validate()
}

// NewPassword is 24 random bytes, hex encoded.
func NewPassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}
