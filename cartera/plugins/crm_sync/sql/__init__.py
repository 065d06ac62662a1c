"""A creditor's database: assignments read from its view, activities written back to its table."""
