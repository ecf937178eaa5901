from xmc.io import load_json
from xmc.runlog import finish, start
from xmc.tables import results_table, table3, table5, write_table

log = start(snakemake.log[0], "tables")
out, params = snakemake.output, snakemake.params
rows = [load_json(path) for path in snakemake.input]
table = results_table(rows)
write_table(table, csv=out.csv, markdown=out.md)
log.info("results: %d rows (valid and test)", len(table))

# Tables 3 and 5 read the test split only (xmc.tables.keep_test_split) and say so
t3 = table3(rows, params.table3_methods, params.paper_table3, params.datasets, params.paper_names,
            notes=params.table3_notes)
write_table(t3, csv=out.table3_csv, markdown=out.table3_md, latex=out.table3_tex, html=out.table3_html,
            groups=params.datasets, caption="Table 3 layout, test split: P@k (%) of ours beside the paper's")
log.info("table 3: %d methods, %d in the grid", len(t3), sum(m is not None for m in params.table3_methods.values()))

t5 = table5(rows, params.table5_ids, params.paper_table5, params.datasets, params.paper_names,
            roles=params.table5_roles, same=params.same_as_paper)
write_table(t5, csv=out.table5_csv, markdown=out.table5_md, latex=out.table5_tex, html=out.table5_html,
            caption="Table 5 layout, test split: P@k and R@k (%) of ours beside the paper's")
log.info("table 5: ids in the grid: %s", sorted(i for i, m in params.table5_ids.items() if m is not None))

finish()
