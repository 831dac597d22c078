package jobs

import "context"

// Sweep runs a whole pass of c's sweep of the rows of deleted jobs, which
// Run does a little every minute.
func Sweep(ctx context.Context, c *Client) error {
	for _, table := range []string{c.tables.results, c.tables.errs} {
		for cursor := int64(0); ; {
			next, err := c.tables.sweepPage(ctx, table, cursor)
			if err != nil {
				return err
			}
			if next == 0 {
				break
			}
			cursor = next
		}
	}
	return nil
}
