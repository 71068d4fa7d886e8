//! What fingerprinting a message's text costs (the clusters benchmark reports it):
//! `cargo run --release -p lazaret-scan --example fingerprint_cost`.

fn main() {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "again", "mail", "server",
        "outbreak", "worm", "copy",
    ];
    let mut text = String::new();
    let mut s: u64 = 7;
    while text.len() < 10240 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(words[(s >> 33) as usize % words.len()]);
        text.push_str(if (s >> 20).is_multiple_of(12) {
            "\n"
        } else {
            " "
        });
    }
    let t = std::time::Instant::now();
    let n = 2000;
    let mut k = 0;
    for _ in 0..n {
        k += lazaret_scan::fingerprint::TextFingerprint::of(std::hint::black_box(&text))
            .keys()
            .len();
    }
    println!("{:?} per 10 KB text ({k})", t.elapsed() / n);
}
