package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
)

// rawStmt is a statement of the writer's hottest writes (a task's insert,
// its events, its claim and outcome updates, BEGIN and COMMIT), prepared on
// the driver's connection and run through sql.Conn.Raw rather than
// database/sql's Stmt. database/sql converts every argument into a new
// slice on each call and wraps the result: for the writer, which runs five
// of these per task, that was an eighth of all the bytes fabricd allocated.
// Only the writer goroutine uses them, as it does its connection.
type rawStmt struct {
	conn *sql.Conn
	st   driver.Stmt
	ex   driver.StmtExecContext
	nv   []driver.NamedValue // the arguments, reused
}

func prepareRaw(ctx context.Context, conn *sql.Conn, q string) (*rawStmt, error) {
	s := &rawStmt{conn: conn}
	err := conn.Raw(func(dc any) error {
		p, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("the driver's connection (%T) does not prepare with a context", dc)
		}
		st, err := p.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		ex, ok := st.(driver.StmtExecContext)
		if !ok {
			st.Close()
			return fmt.Errorf("the driver's statement (%T) does not execute with a context", st)
		}
		s.st, s.ex = st, ex
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: preparing %q: %w", q, err)
	}
	return s, nil
}

// Exec runs the statement with args, which must be what the writer binds:
// int, int64, float64, bool, string, []byte or nil.
func (s *rawStmt) Exec(args ...any) (driver.Result, error) {
	nv := s.nv[:0]
	for i, a := range args {
		switch v := a.(type) {
		case int:
			a = int64(v)
		case int64, float64, bool, string, []byte, nil:
		default:
			return nil, fmt.Errorf("store: argument %d is a %T; want an integer, float, bool, string, []byte or nil", i+1, a)
		}
		nv = append(nv, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	s.nv = nv
	var res driver.Result
	err := s.conn.Raw(func(any) (err error) {
		res, err = s.ex.ExecContext(context.Background(), nv)
		return err
	})
	clear(nv) // no references kept to the caller's values
	return res, err
}

// Close closes the statement.
func (s *rawStmt) Close() error {
	if s == nil {
		return nil
	}
	return s.conn.Raw(func(any) error { return s.st.Close() })
}
