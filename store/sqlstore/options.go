package sqlstore

// DefaultTable is the outbox table's name unless Options.Table says
// otherwise.
const DefaultTable = "ferry_outbox"

// Options are the settings every store shares.
type Options struct {
	// Table is the outbox table; DefaultTable if empty. The shard leases,
	// relay nodes and schema version live in tables named after it.
	Table string
	// MaxConns bounds the store's connection pool; 0 means the package's
	// default.
	MaxConns int
}

// TableName returns o.Table, or DefaultTable if it is empty.
func (o Options) TableName() string {
	if o.Table == "" {
		return DefaultTable
	}
	return o.Table
}
