package ledgerclient

import (
	"context"
	"net/http"

	"github.com/notarize/docker-notarize/ledger/api"
)

// KeyIdentity implements ops for the fake ledgers: they enrol no
// identities (404, as a ledger without them answers).
func (f *fakeOps) KeyIdentity(context.Context, string) ([]byte, error) {
	return nil, &APIError{StatusCode: http.StatusNotFound, Code: api.CodeNotFound, Message: "no enrolled identity"}
}
