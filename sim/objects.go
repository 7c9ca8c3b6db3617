package sim

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// maxOutputKeys bounds the .rN suffixes tried for one output: more agents
// than this answering one broadcast with different large outputs is not a
// fleet this simulates.
const maxOutputKeys = 100_000

// putNoOverwrite stores data under base in the object store bucket, never replacing another agent's
// object, as agents do: a broadcast has one request_id for all its agents,
// so their large outputs share the base key. A key holding identical content
// is reused (this upload retried, or the same output from another agent);
// otherwise the first free of base, base.r1, base.r2, … is taken. It returns
// the key used. claimed carries, across the retries of one upload, the key
// that upload reserved, so a retry after a failed put does not move on.
//
// "Free" is decided atomically: the key is reserved by writing a deleted
// marker as its first meta message, with the stream's expected last
// sequence per subject at 0, so of two agents racing for a key exactly one
// gets it; the put then replaces the marker. Readers never see the marker
// as content: a result names a key only after its put completed.
func putNoOverwrite(ctx context.Context, js jetstream.JetStream, bucket, base string, data []byte, claimed *string) (string, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	digest := "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
	for i := range maxOutputKeys {
		key := base
		if i > 0 {
			key = fmt.Sprintf("%s.r%d", base, i)
		}
		info, err := obs.GetInfo(ctx, key, jetstream.GetObjectInfoShowDeleted())
		switch {
		case err == nil && !info.Deleted && info.Digest == digest && info.Size == uint64(len(data)):
			return key, nil
		case err == nil && key != *claimed:
			continue // another agent's object or reservation
		case err == nil:
			// Reserved by this upload on an earlier try: put it now.
		case errors.Is(err, jetstream.ErrObjectNotFound):
			won, err := reserve(ctx, js, bucket, key)
			if err != nil {
				return "", fmt.Errorf("reserve %s: %w", key, err)
			}
			if !won {
				continue
			}
			*claimed = key
		default:
			return "", fmt.Errorf("look up %s: %w", key, err)
		}
		if _, err := obs.PutBytes(ctx, key, data); err != nil {
			return "", fmt.Errorf("put %s: %w", key, err)
		}
		return key, nil
	}
	return "", fmt.Errorf("no free key from %s to %s.r%d", base, base, maxOutputKeys-1)
}

// reserve writes a deleted marker as the first meta message of key in the
// object store bucket; false when the key already has one (another agent
// got there first). The subject and the meta message are the object
// store's (NATS ADR-20): $O.{bucket}.M.{base64url(key)}, an ObjectInfo.
func reserve(ctx context.Context, js jetstream.JetStream, bucket, key string) (bool, error) {
	marker, err := json.Marshal(jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: key}, Bucket: bucket, NUID: uuid.NewString(), Deleted: true,
	})
	if err != nil {
		return false, err
	}
	subject := "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(key))
	_, err = js.Publish(ctx, subject, marker, jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return false, nil
	}
	return err == nil, err
}
