//! Helpers shared by the integration tests.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;

/// Every row as `a|b|c`, sorted (a multiset).
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, i).unwrap())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}
