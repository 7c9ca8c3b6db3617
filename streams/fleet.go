package streams

import "github.com/kanade-go/kanade/wire"

// FleetBuckets are the fleet-management KV buckets Ensure creates, with
// upstream's history depths: derived membership and layered config keep
// one revision, metadata and group contacts five.
var FleetBuckets = map[string]int{
	wire.BucketAgentGroupsDerived: 1,
	wire.BucketAgentMeta:          5,
	wire.BucketAgentConfig:        1,
	"group_contacts":              5,
}
