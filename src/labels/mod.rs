//! Label sets. Kinetics-400 is built in (PaddleVideo's `Kinetics-400_label_list.txt` without
//! its index column: line i is class i).

const KINETICS400: &str = include_str!("../../assets/labels/kinetics400.txt");

/// The 400 Kinetics-400 class names, class index order.
pub fn kinetics400() -> Vec<String> {
    KINETICS400
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads a labels file with one class name per line (line i = class i); blank lines at the end
/// are ignored. The error is one line, `<path>: <problem>`.
pub fn read_label_lines(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let names: Vec<String> = text
        .trim_end()
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    if names.is_empty() || names.iter().any(String::is_empty) {
        return Err(format!(
            "{}: expected one class name per line, with no blank lines",
            path.display()
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinetics400_has_400_names_in_order() {
        let names = super::kinetics400();
        assert_eq!(names.len(), 400);
        assert_eq!(names[0], "abseiling");
        assert_eq!(names[39], "building_shed");
    }
}
