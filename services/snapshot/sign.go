package snapshot

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/signing"
)

// Limits a snapshot object must keep to be restored: the bucket is written
// through JetStream, so its meta is not trusted blindly.
const (
	maxSnapshotBytes  = 1 << 40 // 1 TiB compressed
	maxSnapshotChunks = 1 << 24
)

// nameRe is the name Write gives a snapshot: its UTC time, then the node.
var nameRe = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{9}Z-[A-Za-z0-9_-]{1,128}$`)

// signedContent is what a snapshot's signature covers: its name, the
// SHA-256 digest of its bytes (the object store checks the bytes against
// it on reading), its offsets, schema, node and database size. A node of the cluster holding
// the command signing key signs it; one holding the key verifies it
// before restoring.
func signedContent(oi *jetstream.ObjectInfo) []byte {
	m := oi.Metadata
	return fmt.Appendf(nil, "kanade-snapshot\n%s\n%s\n%s\n%s\n%s\n%s\n", oi.Name, oi.Digest, m[metaOffsets], m[metaSchema], m[metaNode], m[metaDBBytes])
}

// sign adds the signature headers of oi to its meta.
func sign(obj jetstream.ObjectStore, oi *jetstream.ObjectInfo, signer *signing.Signer) (nats.Header, error) {
	if signer == nil {
		return nil, nil
	}
	m := &nats.Msg{Data: signedContent(oi)}
	if err := signer.Sign(m); err != nil {
		return nil, err
	}
	return m.Header, nil
}

// check says why the snapshot oi must not be restored ("" when it may):
// a name, size or chunk count out of bounds, or, with a verifier (the
// node's own signing key), a missing or bad signature.
func check(oi *jetstream.ObjectInfo, verify *signing.Signer) string {
	switch {
	case !nameRe.MatchString(oi.Name):
		return "name is not a snapshot's"
	case oi.Size == 0 || oi.Size > maxSnapshotBytes:
		return "size " + strconv.FormatUint(oi.Size, 10) + " out of bounds"
	case oi.Chunks > maxSnapshotChunks:
		return "too many chunks"
	case oi.Digest == "":
		return "no digest"
	case oi.Opts != nil && oi.Opts.Link != nil:
		return "a link, not a snapshot"
	case oi.Metadata[metaEncoding] != "zstd" || oi.Metadata[metaNode] == "" || oi.Metadata[metaOffsets] == "":
		return "no snapshot metadata"
	}
	if n, err := strconv.ParseInt(oi.Metadata[metaDBBytes], 10, 64); err != nil || n <= 0 {
		return "no database size"
	}
	if verify == nil {
		return ""
	}
	ring, err := signing.NewKeyring([]signing.KeyringEntry{verify.KeyringEntry()})
	if err != nil {
		return err.Error()
	}
	v := ring.Verify(oi.Headers, signedContent(oi), time.Now())
	if v.Outcome != signing.OK {
		return fmt.Sprintf("signature %s: %s (signed with this node's key %s?)", v.Outcome, v.Reason(), verify.Kid())
	}
	return ""
}
