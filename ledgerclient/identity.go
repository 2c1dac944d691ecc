package ledgerclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// maxKeyIdentitySize bounds the answer of a key identity request.
const maxKeyIdentitySize = 4 << 10

// KeyIdentity implements ops: GET /api/v1/keys/{keyID}/identity.
func (h *httpOps) KeyIdentity(ctx context.Context, keyID string) ([]byte, error) {
	return h.do(ctx, http.MethodGet, api.PathKeys+keyID+api.PathKeyIdentitySuffix, nil, nil, maxKeyIdentitySize)
}

// EnrolledIdentity returns the identity the ledger enrols keyID with (its
// --signers file), and false when it enrols none (404) or is of a version
// without enrolled identities. It is the ledger's word, not proven by the
// log: what it proves is that the ledger checked, when each statement was
// submitted, that its claimed name and email were these or absent. An
// answer for another key, or not a valid identity, is an error.
func (c *Client) EnrolledIdentity(ctx context.Context, keyID string) (notarize.Identity, bool, error) {
	b, err := c.ops.KeyIdentity(ctx, keyID)
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.StatusCode == http.StatusNotFound {
		return notarize.Identity{}, false, nil
	}
	if err != nil {
		return notarize.Identity{}, false, fmt.Errorf("enrolled identity of key %s: %w", keyID, err)
	}
	var ki api.KeyIdentity
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ki); err != nil {
		return notarize.Identity{}, false, fmt.Errorf("enrolled identity of key %s: %w", keyID, err)
	}
	if ki.KeyID != keyID {
		return notarize.Identity{}, false, fmt.Errorf("enrolled identity of key %s: the ledger answered for key %.80q", keyID, ki.KeyID)
	}
	id := notarize.Identity{Name: ki.Name, Email: ki.Email}
	if err := id.Validate(); err != nil {
		return notarize.Identity{}, false, fmt.Errorf("enrolled identity of key %s: %w", keyID, err)
	}
	return id, true, nil
}
