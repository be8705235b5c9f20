// sqlx's `migrate!` embeds the migrations at compile time; without this a new migration file would not
// rebuild the crate (the documented `sqlx migrate build-script` output).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
