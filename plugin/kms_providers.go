//go:build !nokms

package plugin

// The KMS providers built into the plugin: sigstore's, as cosign has them.
// Each registers its URI scheme with sigstore's kms package in its init; a
// scheme not registered is refused with the list of those that are (see
// openKMS). Their SDKs add about 110 package inits and 1.4 MB of init-time
// allocation to every run of the plugin; `go build -tags nokms` leaves them
// out (file keys and PKCS#11 keys still work).
import (
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"        // awskms://
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"      // azurekms://
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"        // gcpkms://
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault" // hashivault://
)
