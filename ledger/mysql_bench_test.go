package ledger

import (
	"fmt"
	"testing"
)

// BenchmarkIngestMySQL is BenchmarkIngest on MySQL storage (the MariaDB
// server of the tests), with one instance and with two instances sharing
// the database, the clients spread over them. Run both in one go to
// compare:
//
//	go test -run '^$' -bench 'Ingest' -benchtime 4000x ./ledger/
func BenchmarkIngestMySQL(b *testing.B) {
	for _, instances := range []int{1, 2} {
		for _, clients := range []int{64, 256, 1024} {
			b.Run(fmt.Sprintf("instances=%d/clients=%d", instances, clients), func(b *testing.B) {
				dsn := mysqlEnv.database(b)
				skey := noteKey(b, "bench.example/ledger")
				var urls []string
				for range instances {
					urls = append(urls, startLedgerAt(b, mysqlAt(dsn), mysqlConfig(b, skey)).url)
				}
				ingest(b, urls, clients)
			})
		}
	}
}
