package plugin

import (
	"fmt"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerConfigKeychain resolves registry credentials the way the docker CLI
// does: from the config file in config.Dir() — which follows DOCKER_CONFIG
// and, when run as `docker --config DIR notarize …`, DIR — and the
// credential helpers it names. authn.DefaultKeychain reads only
// DOCKER_CONFIG or ~/.docker, so it would pick the wrong file under --config.
// The lookup order (repository, then registry; Docker Hub under its legacy
// key) is go-containerregistry's.
type dockerConfigKeychain struct {
	dir func() string // the config directory; config.Dir in production
}

// Resolve implements authn.Keychain.
func (k dockerConfigKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	dir := config.Dir
	if k.dir != nil {
		dir = k.dir
	}
	cf, err := config.Load(dir())
	if err != nil {
		return nil, fmt.Errorf("docker config %s: %w", dir(), err)
	}
	var cfg, empty types.AuthConfig
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		if cfg, err = cf.GetAuthConfig(key); err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", target.RegistryStr(), err)
		}
		cfg.ServerAddress = "" // set by GetAuthConfig; not part of "is there a credential"
		if cfg != empty {
			break
		}
	}
	if cfg == empty {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	}), nil
}
