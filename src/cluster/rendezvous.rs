//! Which live node should own a Page: rendezvous (highest random weight) hashing of the Page id over the live
//! nodes' names. Pages spread evenly, and when a node joins or leaves only the Pages it gains or had move. A
//! node's name (not its incarnation) is what counts, so a node that restarts under the same name gets its
//! Pages back. SHA-256, so every node (and every build) computes the same weights.

use sha2::{Digest, Sha256};

/// The weight of `page` on the node named `node`.
fn weight(node: &str, page: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(node.as_bytes());
    hash.update([0]);
    hash.update(page.as_bytes());
    let digest = hash.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

/// The node of `nodes` (id, name) that should own `page`: the highest weight, ties to the lowest id.
pub fn owner(page: &str, nodes: &[(i64, String)]) -> Option<i64> {
    nodes.iter().max_by(|a, b| weight(&a.1, page).cmp(&weight(&b.1, page)).then(b.0.cmp(&a.0))).map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<(i64, String)> {
        names.iter().enumerate().map(|(i, n)| (i as i64 + 1, (*n).to_owned())).collect()
    }

    #[test]
    fn pages_spread_evenly_and_few_move_when_a_node_joins() {
        let pages: Vec<String> = (0..3000).map(|i| format!("10471111{i:07}")).collect();
        let three = nodes(&["a", "b", "c"]);
        let mut counts = [0usize; 3];
        for page in &pages {
            counts[owner(page, &three).unwrap() as usize - 1] += 1;
        }
        assert!(counts.iter().all(|&n| (850..=1150).contains(&n)), "{counts:?}");

        let four = nodes(&["a", "b", "c", "d"]);
        let moved = pages.iter().filter(|p| owner(p, &three) != owner(p, &four)).count();
        // Only the pages the new node takes move: about a quarter.
        assert!((600..=900).contains(&moved), "{moved}");
        assert!(pages.iter().all(|p| owner(p, &three) == owner(p, &four) || owner(p, &four) == Some(4)));
    }

    #[test]
    fn no_nodes_no_owner() {
        assert_eq!(owner("1", &[]), None);
    }
}
